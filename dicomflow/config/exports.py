"""Export targets (the ``EXPORT_TARGETS`` setting): where each finished batch is exported, and how.

Three kinds: ``gcs`` (``dicomStores.export`` to a Cloud Storage prefix), ``bigquery`` (``dicomStores.export`` of
the metadata to a table) and ``deidentify`` (``dicomStores.deidentify`` into an existing research store, with a
``DeidentifyConfig`` passed through unchanged, or the ``gs://`` URI of one)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

_NAME = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
_GCS = re.compile(r"^gs://([a-z0-9][a-z0-9._\-]{1,220}[a-z0-9])(/.*)?$")
_TABLE = re.compile(r"^bq://[A-Za-z0-9_:.\-]+\.\w+\.\w+$")
_MIME_TYPES = ("application/dicom", "image/jpeg", "image/png", "application/octet-stream")
_DISPOSITIONS = ("WRITE_EMPTY", "WRITE_TRUNCATE", "WRITE_APPEND")
_ID = r"[A-Za-z0-9_.\-]{1,256}"  # dataset and DICOM store ids, as the API takes them
_STORE = re.compile(
    rf"^projects/([a-z0-9.:\-]{{1,100}})/locations/([a-z0-9\-]{{1,63}})/datasets/{_ID}/dicomStores/{_ID}$"
)
_OBJECT = re.compile(r"^gs://[a-z0-9][a-z0-9._\-]{1,220}[a-z0-9]/.+$")
_KINDS = ("gcs", "bigquery", "deidentify")


@dataclass(frozen=True)
class ExportTarget:
    """One destination: a GCS prefix with a mimeType, a BigQuery table with a write disposition, or a research
    store the batch is de-identified into (``deidentify_config`` the DeidentifyConfig as JSON text, or
    ``deidentify_config_uri`` the gs:// object holding it)."""

    name: str
    gcs_uri_prefix: str | None = None
    mime_type: str | None = None
    bigquery_table: str | None = None
    write_disposition: str | None = None
    deidentify_store: str | None = None
    deidentify_config: str | None = None
    deidentify_config_uri: str | None = None

    @property
    def deidentifies(self) -> bool:
        return self.deidentify_store is not None

    @property
    def project_and_location(self) -> tuple[str, str] | None:
        """The de-id destination's project and location (None for the other kinds)."""
        match = _STORE.match(self.deidentify_store or "")
        return (match.group(1), match.group(2)) if match else None

    @property
    def gcs_bucket_and_prefix(self) -> tuple[str, str] | None:
        if not self.gcs_uri_prefix:
            return None
        bucket, _, prefix = self.gcs_uri_prefix.removeprefix("gs://").partition("/")
        return bucket, prefix

    def request_body(self, filter_uri: str) -> dict[str, Any]:
        """The ``dicomStores.export`` (or, for a de-id target, ``dicomStores.deidentify``) body for exactly the
        instances listed in ``filter_uri``."""
        body: dict[str, Any] = {"filterConfig": {"resourcePathsGcsUri": filter_uri}}
        if self.deidentify_store:
            body["destinationStore"] = self.deidentify_store
            if self.deidentify_config_uri:
                body["gcsConfigUri"] = self.deidentify_config_uri
            else:
                body["config"] = json.loads(self.deidentify_config or "{}")
        elif self.gcs_uri_prefix:
            destination: dict[str, Any] = {"uriPrefix": self.gcs_uri_prefix}
            if self.mime_type:
                destination["mimeType"] = self.mime_type
            body["gcsDestination"] = destination
        else:
            body["bigqueryDestination"] = {
                "tableUri": self.bigquery_table,
                "writeDisposition": self.write_disposition or "WRITE_APPEND",
            }
        return body


def json_list(raw: str, what: str) -> list[Any]:
    """The JSON list of a setting (empty for an empty value); ValueError saying what is wrong."""
    if not raw.strip():
        return []
    try:
        items = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg} at character {exc.pos})") from exc
    if not isinstance(items, list):
        raise ValueError(f"expected a JSON list of {what}")
    return items


def require_unique(names: list[str], what: str) -> None:
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"{what} must be unique: {', '.join(duplicates)}")


def parse_export_targets(raw: str) -> tuple[ExportTarget, ...]:
    """Parse the JSON list; ValueError naming the target and the problem."""
    targets = [_target(index, item) for index, item in enumerate(json_list(raw, "targets"))]
    require_unique([t.name for t in targets], "target names")
    return tuple(targets)


def _target(index: int, item: Any) -> ExportTarget:
    where = f"target {index}"
    if not isinstance(item, dict):
        raise ValueError(f"{where} must be an object")
    unknown = set(item) - {"name", "gcs", "mime_type", "bigquery", "write_disposition", "deidentify"}
    if unknown:
        raise ValueError(f"{where} has unknown keys: {', '.join(sorted(unknown))}")
    name = item.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"{where} needs a name of lowercase letters, digits and '-' (starting with a letter)")
    where = f"target {name!r}"
    gcs, bigquery = item.get("gcs"), item.get("bigquery")
    if sum(1 for kind in _KINDS if item.get(kind)) != 1:
        raise ValueError(f"{where} needs exactly one of 'gcs' (gs://bucket/prefix), 'bigquery' (bq://p.d.t) or "
                         "'deidentify' ({\"store\": ..., \"config\": {...}})")  # fmt: skip
    if item.get("deidentify"):
        return _deidentify_target(name, where, item)
    if gcs:
        if not isinstance(gcs, str) or not _GCS.match(gcs):
            raise ValueError(f"{where}: gcs must be gs://bucket[/prefix]")
        mime = item.get("mime_type")
        if mime is not None and (not isinstance(mime, str) or mime.split(";")[0].strip().lower() not in _MIME_TYPES):
            raise ValueError(f"{where}: mime_type must be one of {', '.join(_MIME_TYPES)} (optionally with parameters)")
        if item.get("write_disposition"):
            raise ValueError(f"{where}: write_disposition applies to BigQuery targets only")
        return ExportTarget(name, gcs_uri_prefix=gcs.rstrip("/"), mime_type=mime)
    if not isinstance(bigquery, str) or not _TABLE.match(bigquery):
        raise ValueError(f"{where}: bigquery must be bq://project.dataset.table")
    disposition = item.get("write_disposition", "WRITE_APPEND")
    if disposition not in _DISPOSITIONS:
        raise ValueError(f"{where}: write_disposition must be one of {', '.join(_DISPOSITIONS)}")
    if item.get("mime_type"):
        raise ValueError(f"{where}: mime_type applies to GCS targets only")
    return ExportTarget(name, bigquery_table=bigquery, write_disposition=disposition)


def _deidentify_target(name: str, where: str, item: dict[str, Any]) -> ExportTarget:
    if item.get("mime_type") or item.get("write_disposition"):
        raise ValueError(f"{where}: mime_type and write_disposition apply to GCS and BigQuery targets only")
    spec = item["deidentify"]
    if not isinstance(spec, dict):
        raise ValueError(f"{where}: deidentify must be an object with 'store' and 'config' or 'config_uri'")
    unknown = set(spec) - {"store", "config", "config_uri"}
    if unknown:
        raise ValueError(f"{where}: deidentify has unknown keys: {', '.join(sorted(unknown))}")
    store = spec.get("store")
    if not isinstance(store, str) or not _STORE.match(store):
        raise ValueError(f"{where}: deidentify.store must be projects/P/locations/L/datasets/D/dicomStores/S "
                         "(ids of letters, digits, '_', '-' and '.'), the research store (it must exist)")  # fmt: skip
    if ("config" in spec) == ("config_uri" in spec):
        raise ValueError(f"{where}: deidentify needs exactly one of 'config' (a DeidentifyConfig object) or "
                         "'config_uri' (gs://bucket/object holding one)")  # fmt: skip
    if "config" in spec:
        if not isinstance(spec["config"], dict):
            raise ValueError(f"{where}: deidentify.config must be a JSON object (the API's DeidentifyConfig)")
        return ExportTarget(name, deidentify_store=store, deidentify_config=json.dumps(spec["config"], sort_keys=True))
    uri = spec["config_uri"]
    if not isinstance(uri, str) or not _OBJECT.match(uri):
        raise ValueError(f"{where}: deidentify.config_uri must be gs://bucket/object")
    return ExportTarget(name, deidentify_store=store, deidentify_config_uri=uri)


def store_mismatch(target: ExportTarget, store: str) -> str | None:
    """Why a de-id target cannot take the batches of ``store`` (None: it can): the API writes only into a store
    of the source's project and location, and never into the source itself."""
    if not target.deidentifies:
        return None
    if target.deidentify_store == store:
        return f"target {target.name!r}: deidentify.store is the store it copies from ({store})"
    source = _STORE.match(store)
    if source and target.project_and_location != (source.group(1), source.group(2)):
        return (f"target {target.name!r}: deidentify.store must be in the project and location of the store it "
                f"copies from ({source.group(1)}, {source.group(2)}): the API refuses other locations")  # fmt: skip
    return None

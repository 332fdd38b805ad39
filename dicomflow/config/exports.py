"""Export targets (the ``EXPORT_TARGETS`` setting): where each finished batch is exported, and how."""

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


@dataclass(frozen=True)
class ExportTarget:
    """One destination: a GCS prefix with a mimeType, or a BigQuery table with a write disposition."""

    name: str
    gcs_uri_prefix: str | None = None
    mime_type: str | None = None
    bigquery_table: str | None = None
    write_disposition: str | None = None

    @property
    def gcs_bucket_and_prefix(self) -> tuple[str, str] | None:
        if not self.gcs_uri_prefix:
            return None
        bucket, _, prefix = self.gcs_uri_prefix.removeprefix("gs://").partition("/")
        return bucket, prefix

    def request_body(self, filter_uri: str) -> dict[str, Any]:
        """The ``dicomStores.export`` body exporting exactly the instances listed in ``filter_uri``."""
        body: dict[str, Any] = {"filterConfig": {"resourcePathsGcsUri": filter_uri}}
        if self.gcs_uri_prefix:
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
    unknown = set(item) - {"name", "gcs", "mime_type", "bigquery", "write_disposition"}
    if unknown:
        raise ValueError(f"{where} has unknown keys: {', '.join(sorted(unknown))}")
    name = item.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"{where} needs a name of lowercase letters, digits and '-' (starting with a letter)")
    where = f"target {name!r}"
    gcs, bigquery = item.get("gcs"), item.get("bigquery")
    if bool(gcs) == bool(bigquery):
        raise ValueError(f"{where} needs exactly one of 'gcs' (gs://bucket/prefix) or 'bigquery' (bq://p.d.t)")
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

"""``dicomStores.export`` to Cloud Storage (DICOM, transcoded DICOM, JPEG, PNG, raw frames) and BigQuery."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom.datadict import keyword_for_tag

from healthcare_emulator.errors import invalid_argument
from healthcare_emulator.gcs import GcsClient, StorageError, StorageNotFoundError
from healthcare_emulator.operations import Job, OperationContext, OperationFailedError
from healthcare_emulator.render import (
    RenderError,
    mime_extension,
    parse_mime_type,
    raw_frames,
    render_frames,
    transcode,
)
from healthcare_emulator.repository import InstanceRecord, Repository
from healthcare_emulator.transcode import TRANSCODE_TARGETS

_RESOURCE_PATH = re.compile(
    r"^/?studies/(?P<study>[0-9.]+)(/series/(?P<series>[0-9.]+)(/instances/(?P<sop>[0-9.]+))?)?/?$"
)
_TABLE_URI = re.compile(r"^bq://(?P<project>[A-Za-z0-9_:.\-]+)\.(?P<dataset>\w+)\.(?P<table>\w+)$")
_WRITE_DISPOSITIONS = {"WRITE_DISPOSITION_UNSPECIFIED", "WRITE_EMPTY", "WRITE_TRUNCATE", "WRITE_APPEND"}


@dataclass(frozen=True)
class GcsExport:
    bucket: str
    prefix: str
    mime_type: str
    kind: str  # "dicom", "jpeg", "png", "octet-stream"
    transfer_syntax: str | None
    extension: str


def parse_gcs_destination(destination: dict[str, Any]) -> GcsExport:
    """Validate ``gcsDestination`` at request time (400 with the reason)."""
    uri = str(destination.get("uriPrefix") or "")
    if not uri.startswith("gs://") or len(uri) <= len("gs://"):
        raise invalid_argument(f"gcsDestination.uriPrefix must be gs://bucket[/prefix], got {uri!r}")
    bucket, _, prefix = uri[len("gs://") :].partition("/")
    mime_type = str(destination.get("mimeType") or "application/dicom")
    base, params = parse_mime_type(mime_type)
    try:
        extension = mime_extension(mime_type)
    except ValueError as exc:
        raise invalid_argument(f"unsupported gcsDestination.mimeType {mime_type!r}") from exc
    kinds = {"application/dicom": "dicom", "image/jpeg": "jpeg", "image/png": "png"}
    kind = kinds.get(base, "octet-stream")
    transfer_syntax = params.get("transfer-syntax")
    if kind == "dicom" and transfer_syntax not in (None, "*", *TRANSCODE_TARGETS):
        raise invalid_argument(
            f"unsupported transfer syntax {transfer_syntax!r} in gcsDestination.mimeType; "
            f"supported: {', '.join(TRANSCODE_TARGETS)}"
        )
    return GcsExport(bucket, prefix.strip("/"), mime_type, kind, transfer_syntax, extension)


def parse_resource_paths(text: str) -> list[tuple[str, str | None, str | None]]:
    """Parse a filter file: one ``/studies/S[/series/SE[/instances/I]]`` per line; blank lines ignored."""
    paths: list[tuple[str, str | None, str | None]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        match = _RESOURCE_PATH.match(line)
        if not match:
            raise OperationFailedError(
                "INVALID_ARGUMENT", f"filter file line {number} is not a DICOM resource path: {line[:200]!r}"
            )
        paths.append((match["study"], match["series"], match["sop"]))
    return paths


def select_instances(
    repository: Repository, store: str, filter_uri: str | None, gcs: GcsClient
) -> list[InstanceRecord]:
    """The instances an export covers: the whole store, or what the filter file lists (deduplicated)."""
    if not filter_uri:
        return repository.find_instances(store)
    bucket, _, name = filter_uri.removeprefix("gs://").partition("/")
    try:
        text = gcs.read(bucket, name).decode("utf-8")
    except StorageNotFoundError as exc:
        raise OperationFailedError("NOT_FOUND", f"filter file {filter_uri} does not exist") from exc
    except (StorageError, UnicodeDecodeError) as exc:
        raise OperationFailedError("INVALID_ARGUMENT", f"cannot read filter file {filter_uri}: {exc}") from exc
    selected: dict[tuple[str, str, str], InstanceRecord] = {}
    for study, series, sop in parse_resource_paths(text):
        for record in repository.find_instances(store, study, series, sop):
            selected[(record.study, record.series, record.sop)] = record
    return [selected[key] for key in sorted(selected)]


def export_objects(export: GcsExport, record: InstanceRecord, data: bytes) -> list[tuple[str, bytes, str]]:
    """The (object name, bytes, content type) an instance becomes under ``export``."""
    base = "/".join(part for part in (export.prefix, record.study, record.series, record.sop) if part)
    if export.kind == "dicom":
        if export.transfer_syntax is not None and export.transfer_syntax != "*":
            data = transcode(data, export.transfer_syntax)
        return [(base + export.extension, data, "application/dicom")]
    if export.kind in ("jpeg", "png"):
        frames = render_frames(data, export.kind)
        content_type = f"image/{export.kind}"
    else:
        frames = raw_frames(data)
        content_type = "application/octet-stream"
    if len(frames) == 1:
        return [(base + export.extension, frames[0], content_type)]
    return [(f"{base}/{number}{export.extension}", frame, content_type) for number, frame in enumerate(frames, 1)]


def gcs_export_job(
    repository: Repository, gcs: GcsClient, store: str, export: GcsExport, filter_uri: str | None
) -> Job:
    def run(context: OperationContext) -> dict[str, Any] | None:
        records = select_instances(repository, store, filter_uri, gcs)
        if not gcs.bucket_exists(export.bucket):
            raise OperationFailedError("NOT_FOUND", f"destination bucket gs://{export.bucket} does not exist")
        context.set_pending(len(records))
        for record in records:
            if context.cancel_requested:
                raise OperationFailedError("CANCELLED", "operation cancelled by request")
            resource = f"/studies/{record.study}/series/{record.series}/instances/{record.sop}"
            try:
                data = repository.read_instance(record)
                context.size += len(data)
                for name, payload, content_type in export_objects(export, record, data):
                    gcs.write(export.bucket, name, payload, content_type)
            except RenderError as exc:
                context.record_failure(resource, str(exc))
                continue
            except StorageNotFoundError as exc:
                raise OperationFailedError("NOT_FOUND", str(exc)) from exc
            except StorageError as exc:
                context.record_failure(resource, str(exc))
                continue
            context.record_success()
        return None

    return run


@dataclass(frozen=True)
class BigQueryExport:
    table_uri: str
    write_disposition: str

    @property
    def table_file(self) -> str:
        return self.table_uri.removeprefix("bq://") + ".ndjson"


def parse_bigquery_destination(destination: dict[str, Any]) -> BigQueryExport:
    table_uri = str(destination.get("tableUri") or "")
    if not _TABLE_URI.match(table_uri):
        raise invalid_argument(f"bigqueryDestination.tableUri must be bq://project.dataset.table, got {table_uri!r}")
    disposition = str(destination.get("writeDisposition") or "WRITE_EMPTY")
    if destination.get("force") and "writeDisposition" not in destination:
        disposition = "WRITE_TRUNCATE"
    if disposition not in _WRITE_DISPOSITIONS:
        raise invalid_argument(f"unknown bigqueryDestination.writeDisposition {disposition!r}")
    if disposition == "WRITE_DISPOSITION_UNSPECIFIED":
        disposition = "WRITE_EMPTY"
    return BigQueryExport(table_uri, disposition)


def bigquery_export_job(
    repository: Repository,
    gcs: GcsClient,
    store: str,
    export: BigQueryExport,
    filter_uri: str | None,
    tables_dir: Path,
) -> Job:
    """Write one JSON row of metadata per instance into a local NDJSON "table" (the emulator's BigQuery)."""

    def run(context: OperationContext) -> dict[str, Any] | None:
        records = select_instances(repository, store, filter_uri, gcs)
        tables_dir.mkdir(parents=True, exist_ok=True)
        path = tables_dir / export.table_file
        if export.write_disposition == "WRITE_EMPTY" and path.exists() and path.stat().st_size > 0:
            raise OperationFailedError("FAILED_PRECONDITION", f"table {export.table_uri} is not empty (WRITE_EMPTY)")
        mode = "a" if export.write_disposition == "WRITE_APPEND" else "w"
        context.set_pending(len(records))
        with path.open(mode, encoding="utf-8") as table:
            for record in records:
                table.write(json.dumps(bigquery_row(record), sort_keys=True) + "\n")
                context.record_success()
        return None

    return run


def bigquery_row(record: InstanceRecord) -> dict[str, Any]:
    """A flat row: one column per top-level attribute, named by keyword (by tag when unknown)."""
    row: dict[str, Any] = {}
    for tag, element in record.metadata.items():
        values = element.get("Value")
        if values is None:
            continue
        column = keyword_for_tag(int(tag, 16)) or f"Tag{tag}"
        row[column] = values[0] if len(values) == 1 else values
    return row

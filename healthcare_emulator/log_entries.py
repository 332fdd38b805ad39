"""Per-item operation errors as Cloud Logging LogEntry JSON, in the shape the Healthcare API writes them.

The real API logs one entry per failed file of a DICOM import, export or de-identification ("Viewing error
logs in Cloud Logging"): resource type ``healthcare_dicom_store`` with the store's labels, a ``jsonPayload``
typed ``google.cloud.healthcare.logging.{Import,Export}DicomLogEntry`` / ``DeidentifyLogEntry`` holding the
source (``source`` or ``resourceName``) and the google.rpc.Status ``error``, the operation id in
``operation``, severity ERROR.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

_PAYLOAD_TYPE = "type.googleapis.com/google.cloud.healthcare.logging."
_STORE_IN_RESOURCE = re.compile(
    r"^projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/datasets/(?P<dataset>[^/]+)"
    r"/dicomStores/(?P<store>[^/]+)"
)


@dataclass(frozen=True)
class _Kind:
    log: str  # the log id after "healthcare.googleapis.com/"
    payload: str  # the jsonPayload message name
    source_field: str  # "source" (a gs:// URI) or "resourceName" (a DICOMweb path)


# By operation method. Import's log id and payload are the documented sample's; the other two follow it.
_KINDS = {
    "ImportDicomData": _Kind("import_dicom", "ImportDicomLogEntry", "source"),
    "ExportDicomData": _Kind("export_dicom", "ExportDicomLogEntry", "resourceName"),
    "DeidentifyDicomStore": _Kind("deidentify", "DeidentifyLogEntry", "resourceName"),
    "DeidentifyDataset": _Kind("deidentify", "DeidentifyLogEntry", "resourceName"),
}


@dataclass(frozen=True)
class LogSource:
    """What an operation's error entries say about where they come from."""

    operation: str  # projects/P/locations/L/datasets/D/operations/ID
    method: str  # ImportDicomData, ExportDicomData, DeidentifyDicomStore, DeidentifyDataset
    store: str | None = None  # the DICOM store the operation works on (None: each item names its store)

    @property
    def operation_id(self) -> str:
        return self.operation.rsplit("/", 1)[1]

    @property
    def project(self) -> str:
        return self.operation.split("/")[1]

    def logs(self) -> bool:
        return self.method in _KINDS


def error_entry(
    source: LogSource, sequence: int, resource: str, reason: str, code: int, timestamp: str, received: str
) -> dict[str, Any]:
    """One LogEntry for a failed item (``resource`` as the job recorded it: a gs:// URI or a DICOMweb path)."""
    kind = _KINDS[source.method]
    store = _store_of(resource) or source.store or ""
    if kind.source_field == "resourceName" and resource.startswith("/") and store:
        resource = f"{store}/dicomWeb{resource}"
    labels = _labels(store, source.operation)
    return {
        "logName": f"projects/{source.project}/logs/{quote('healthcare.googleapis.com/' + kind.log, safe='')}",
        "resource": {"type": "healthcare_dicom_store", "labels": labels},
        "timestamp": timestamp,
        "receiveTimestamp": received,
        "severity": "ERROR",
        "insertId": f"{source.operation_id}-{sequence}",
        "operation": {"id": source.operation_id, "producer": f"healthcare.googleapis.com/{source.method}"},
        "jsonPayload": {
            "@type": _PAYLOAD_TYPE + kind.payload,
            kind.source_field: resource,
            "error": {"code": code, "message": reason},
        },
    }


def operation_filter(operation: str) -> str:
    """The Logging query that selects an operation's entries (what its logsUrl opens)."""
    parts = operation.split("/")
    return (
        f'resource.labels.project_id="{parts[1]}" AND resource.labels.location="{parts[3]}" AND '
        f'resource.labels.dataset_id="{parts[5]}" AND operation.id="{parts[-1]}"'
    )


def logs_url(base_url: str, operation: str) -> str:
    """The emulator's Logs Explorer view of an operation, shaped like ``console.cloud.google.com/logs/query;query=``."""
    project = operation.split("/")[1]
    return f"{base_url.rstrip('/')}/logs/query;query={quote(operation_filter(operation), safe='')}?project={project}"


def _store_of(resource: str) -> str | None:
    match = _STORE_IN_RESOURCE.match(resource)
    return match.group() if match else None


def _labels(store: str, operation: str) -> dict[str, str]:
    match = _STORE_IN_RESOURCE.match(store)
    if match is None:  # no store known: the dataset's labels only
        parts = operation.split("/")
        return {"project_id": parts[1], "location": parts[3], "dataset_id": parts[5], "dicom_store_id": ""}
    return {
        "project_id": match["project"],
        "location": match["location"],
        "dataset_id": match["dataset"],
        "dicom_store_id": match["store"],
    }

"""``:getDICOMStoreMetrics``, ``:getStudyMetrics`` and ``:getSeriesMetrics``: counts and sizes.

Shapes of DicomStoreMetrics, StudyMetrics and SeriesMetrics (int64 values as strings, as proto3 JSON writes
them; zero counts are omitted). The emulator's figures are exact at once, where the API updates them with a
delay. ``blobStorageSizeBytes`` is the size of the stored files; ``structuredStorageSizeBytes`` the size of
their indexed metadata (the emulator's stand-in for the API's structured storage).
"""

from __future__ import annotations

from typing import Any

from werkzeug.wrappers import Request, Response

from healthcare_emulator.errors import not_found
from healthcare_emulator.names import DatasetName, StoreName
from healthcare_emulator.repository import StoreMetrics
from healthcare_emulator.rest import json_response
from healthcare_emulator.service import Emulator


def _store(emulator: Emulator, groups: dict[str, str]) -> StoreName:
    name = StoreName(DatasetName(groups["project"], groups["location"], groups["dataset"]), groups["store"])
    emulator.require_store(name)
    return name


def _counts(metrics: StoreMetrics, *fields: str) -> dict[str, Any]:
    values = {
        "studyCount": metrics.studies,
        "seriesCount": metrics.series,
        "instanceCount": metrics.instances,
        "structuredStorageSizeBytes": metrics.structured_bytes,
        "blobStorageSizeBytes": metrics.blob_bytes,
    }
    return {field: str(values[field]) for field in fields if values[field]}


_SIZES = ("structuredStorageSizeBytes", "blobStorageSizeBytes")


def store_metrics(emulator: Emulator, request: Request, version: str, groups: dict[str, str]) -> Response:
    name = _store(emulator, groups)
    metrics = emulator.repository.metrics(str(name))
    counts = _counts(metrics, "studyCount", "seriesCount", "instanceCount", *_SIZES)
    return json_response({"name": str(name), **counts})


def study_metrics(emulator: Emulator, request: Request, version: str, groups: dict[str, str]) -> Response:
    name = _store(emulator, groups)
    metrics = emulator.repository.metrics(str(name), groups["study"])
    if not metrics.instances:
        raise not_found(f"study {groups['study']} does not exist in {name}")
    counts = _counts(metrics, "seriesCount", "instanceCount", *_SIZES)
    return json_response({"study": f"{name}/dicomWeb/studies/{groups['study']}", **counts})


def series_metrics(emulator: Emulator, request: Request, version: str, groups: dict[str, str]) -> Response:
    name = _store(emulator, groups)
    metrics = emulator.repository.metrics(str(name), groups["study"], groups["series"])
    if not metrics.instances:
        raise not_found(f"series {groups['series']} does not exist in study {groups['study']} of {name}")
    path = f"{name}/dicomWeb/studies/{groups['study']}/series/{groups['series']}"
    return json_response({"series": path, **_counts(metrics, "instanceCount", *_SIZES)})

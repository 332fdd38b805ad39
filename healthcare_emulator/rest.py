"""REST methods on datasets, DICOM stores and operations (import, export, storage class)."""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from werkzeug.wrappers import Request, Response

from healthcare_emulator.errors import already_exists, failed_precondition, invalid_argument, not_found
from healthcare_emulator.exporter import (
    bigquery_export_job,
    gcs_export_job,
    parse_bigquery_destination,
    parse_gcs_destination,
)
from healthcare_emulator.faults import FaultsClearedError
from healthcare_emulator.fieldmask import apply_update_mask, mask_paths
from healthcare_emulator.gcs import StorageUnavailableError
from healthcare_emulator.importer import import_job
from healthcare_emulator.instances import ParsedInstance
from healthcare_emulator.names import DatasetName, LocationName, OperationName, StoreName, validate_id
from healthcare_emulator.operations import Job, OperationContext
from healthcare_emulator.service import Emulator
from healthcare_emulator.wildcard import InvalidImportUriError, parse_import_uri

STORAGE_CLASSES = ("STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE")
STORE_FIELDS = ("labels", "notificationConfig", "notificationConfigs", "streamConfigs")
_UPDATABLE_STORE_FIELDS = frozenset(STORE_FIELDS)
_UPDATABLE_DATASET_FIELDS = frozenset({"timeZone"})
_DEFAULT_PAGE_SIZE = 100
_MAX_PAGE_SIZE = 1000


def json_response(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


def json_body(request: Request) -> dict[str, Any]:
    raw = request.get_data()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise invalid_argument(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise invalid_argument("request body must be a JSON object")
    return body


def base_url(emulator: Emulator, request: Request) -> str:
    """The emulator's own address, the base of every URL it hands out (never the request's Host header)."""
    return emulator.base_url(request.host_url)


def page(request: Request) -> tuple[int, int]:
    """(offset, size) from pageToken/pageSize; tokens are offsets as decimal strings."""
    try:
        size = int(request.args.get("pageSize") or _DEFAULT_PAGE_SIZE)
        offset = int(request.args.get("pageToken") or 0)
    except ValueError as exc:
        raise invalid_argument("pageSize and pageToken must be integers") from exc
    if size <= 0 or offset < 0:
        raise invalid_argument("pageSize must be positive and pageToken non-negative")
    return offset, min(size, _MAX_PAGE_SIZE)


def paged(items: list[dict[str, Any]], key: str, offset: int, size: int) -> dict[str, Any]:
    body: dict[str, Any] = {key: items[offset : offset + size]} if items[offset : offset + size] else {}
    if offset + size < len(items):
        body["nextPageToken"] = str(offset + size)
    return body


def _dataset(groups: dict[str, str]) -> DatasetName:
    return DatasetName(groups["project"], groups["location"], groups["dataset"])


def _store(groups: dict[str, str]) -> StoreName:
    return StoreName(_dataset(groups), groups["store"])


# ----- datasets -----


def create_dataset(emulator: Emulator, request: Request, version: str, groups: dict[str, str]) -> Response:
    body = json_body(request)
    dataset_id = validate_id("datasetId", request.args.get("datasetId"))
    name = DatasetName(groups["project"], groups["location"], dataset_id)
    resource = {"name": str(name), "timeZone": _time_zone(body.get("timeZone"))}
    if not emulator.repository.insert_resource("datasets", str(name), str(name.parent), resource):
        raise already_exists(f"dataset {name} already exists")
    response = {"@type": f"type.googleapis.com/google.cloud.healthcare.{version}.Dataset", **resource}
    return json_response(emulator.operations.finished(name, version, "DatasetService.CreateDataset", response))


def get_dataset(emulator: Emulator, request: Request, version: str, groups: dict[str, str]) -> Response:
    return json_response(emulator.require_dataset(_dataset(groups)))


def list_datasets(emulator: Emulator, request: Request, version: str, groups: dict[str, str]) -> Response:
    offset, size = page(request)
    parent = LocationName(groups["project"], groups["location"])
    return json_response(paged(emulator.repository.list_resources("datasets", str(parent)), "datasets", offset, size))


def patch_dataset(emulator: Emulator, request: Request, version: str, groups: dict[str, str]) -> Response:
    """``PATCH`` a dataset; only ``timeZone`` can be updated (``updateMask=timeZone``)."""
    name = _dataset(groups)
    resource = emulator.require_dataset(name)
    body = json_body(request)
    updated = apply_update_mask(
        resource, body, mask_paths(request.args.get("updateMask"), body), _UPDATABLE_DATASET_FIELDS
    )
    updated["timeZone"] = _time_zone(updated.get("timeZone"))
    emulator.repository.update_resource("datasets", str(name), updated)
    return json_response(updated)


def _time_zone(value: Any) -> str:
    """A valid IANA time zone name; empty means UTC (as the Dataset reference says)."""
    if value in (None, ""):
        return "UTC"
    try:
        ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise invalid_argument(f"timeZone {value!r} is not an IANA time zone name such as America/New_York") from exc
    return str(value)


def delete_dataset(emulator: Emulator, request: Request, version: str, groups: dict[str, str]) -> Response:
    name = _dataset(groups)
    if not emulator.repository.delete_dataset(str(name)):
        raise not_found(f"dataset {name} does not exist")
    return json_response({})


# ----- DICOM stores -----


def create_store(emulator: Emulator, request: Request, version: str, groups: dict[str, str]) -> Response:
    body = json_body(request)
    dataset = _dataset(groups)
    emulator.require_dataset(dataset)
    name = StoreName(dataset, validate_id("dicomStoreId", request.args.get("dicomStoreId")))
    resource = {key: body[key] for key in STORE_FIELDS if key in body}
    resource["name"] = str(name)
    if not emulator.repository.insert_resource("stores", str(name), str(dataset), resource):
        raise already_exists(f"DICOM store {name} already exists")
    return json_response(resource)


def get_store(emulator: Emulator, request: Request, version: str, groups: dict[str, str]) -> Response:
    return json_response(emulator.require_store(_store(groups)))


def patch_store(emulator: Emulator, request: Request, version: str, groups: dict[str, str]) -> Response:
    name = _store(groups)
    resource = emulator.require_store(name)
    body = json_body(request)
    updated = apply_update_mask(
        resource, body, mask_paths(request.args.get("updateMask"), body), _UPDATABLE_STORE_FIELDS
    )
    emulator.repository.update_resource("stores", str(name), updated)
    return json_response(updated)


def list_stores(emulator: Emulator, request: Request, version: str, groups: dict[str, str]) -> Response:
    dataset = _dataset(groups)
    emulator.require_dataset(dataset)
    offset, size = page(request)
    return json_response(paged(emulator.repository.list_resources("stores", str(dataset)), "dicomStores", offset, size))


def delete_store(emulator: Emulator, request: Request, version: str, groups: dict[str, str]) -> Response:
    name = _store(groups)
    emulator.require_dataset(name.dataset)
    if not emulator.repository.delete_store(str(name)):
        raise not_found(f"DICOM store {name} does not exist")
    return json_response({})


# ----- import / export -----


def storage_class_of(settings: Any, field: str = "blobStorageSettings") -> str:
    if settings in (None, {}):
        return "STANDARD"
    if not isinstance(settings, dict):
        raise invalid_argument(f"{field} must be an object")
    value = settings.get("blobStorageClass") or "STANDARD"
    if value == "BLOB_STORAGE_CLASS_UNSPECIFIED":
        return "STANDARD"
    if value not in STORAGE_CLASSES:
        raise invalid_argument(f"{field}.blobStorageClass must be one of {', '.join(STORAGE_CLASSES)}")
    return str(value)


def import_data(emulator: Emulator, request: Request, version: str, groups: dict[str, str]) -> Response:
    name = _store(groups)
    emulator.require_store(name)
    body = json_body(request)
    source = body.get("gcsSource")
    if not isinstance(source, dict) or not source.get("uri"):
        raise invalid_argument("gcsSource.uri is required")
    try:
        pattern = parse_import_uri(str(source["uri"]))
    except InvalidImportUriError as exc:
        raise invalid_argument(str(exc)) from exc
    storage_class = storage_class_of(body.get("blobStorageSettings"))
    require_storage(emulator)

    def notify(instance: ParsedInstance) -> None:
        emulator.notify_stored(str(name), instance, storage_class, "ImportDicomData")

    def fails(object_name: str) -> bool:
        return emulator.faults.fails_import_of(str(name), object_name)

    job = timed_job(
        emulator,
        str(name),
        "ImportDicomData",
        import_job(emulator.repository, emulator.gcs, str(name), pattern, storage_class, fails, notify),
    )
    operation = emulator.operations.start(
        name.dataset,
        version,
        "ImportDicomData",
        "dicom.ImportDicomDataResponse",
        base_url(emulator, request),
        job,
        store=str(name),
    )
    return json_response(operation)


def export_data(emulator: Emulator, request: Request, version: str, groups: dict[str, str]) -> Response:
    name = _store(groups)
    emulator.require_store(name)
    body = json_body(request)
    filter_config = body.get("filterConfig") or {}
    filter_uri = filter_config.get("resourcePathsGcsUri") if isinstance(filter_config, dict) else None
    if filter_uri is not None and not str(filter_uri).startswith("gs://"):
        raise invalid_argument("filterConfig.resourcePathsGcsUri must be a gs:// URI")
    if "gcsDestination" in body and "bigqueryDestination" in body:
        raise invalid_argument("give either gcsDestination or bigqueryDestination, not both")
    if isinstance(body.get("gcsDestination"), dict):
        gcs_export = parse_gcs_destination(body["gcsDestination"])
        job = gcs_export_job(emulator.repository, emulator.gcs, str(name), gcs_export, filter_uri)
    elif isinstance(body.get("bigqueryDestination"), dict):
        bq_export = parse_bigquery_destination(body["bigqueryDestination"])
        tables = emulator.data_dir / "bigquery"
        job = bigquery_export_job(emulator.repository, emulator.gcs, str(name), bq_export, filter_uri, tables)
    else:
        raise invalid_argument("a gcsDestination or bigqueryDestination is required")
    if filter_uri is not None or "gcsDestination" in body:
        require_storage(emulator)
    operation = emulator.operations.start(
        name.dataset,
        version,
        "ExportDicomData",
        "dicom.ExportDicomDataResponse",
        base_url(emulator, request),
        timed_job(emulator, str(name), "ExportDicomData", job),
        store=str(name),
    )
    return json_response(operation)


def require_storage(emulator: Emulator) -> None:
    """400 FAILED_PRECONDITION naming what to set when the emulator has no Cloud Storage."""
    try:
        emulator.gcs.client()
    except StorageUnavailableError as exc:
        raise failed_precondition(str(exc)) from exc


def timed_job(emulator: Emulator, store: str, operation: str, job: Job) -> Job:
    """Apply this store's operation-delay fault (if one is set) before the job works; cleared rules end it. Under
    a timing profile the operation then lasts at least the profile's duration for what it did (``timing``)."""
    delay = emulator.faults.operation_delay(store, operation)

    def run(context: OperationContext) -> dict[str, Any] | None:
        if delay:
            with contextlib.suppress(FaultsClearedError):
                emulator.faults.sleep(delay)
        started = time.monotonic()
        try:
            return job(context)
        finally:
            seconds = emulator.clocks.operation_seconds(operation, context.success + context.failure, context.size)
            emulator.clocks.wait_until(started + seconds)

    return run


# ----- storage class -----


def set_blob_storage_settings(emulator: Emulator, request: Request, version: str, groups: dict[str, str]) -> Response:
    """``{resource}:setBlobStorageSettings`` on a store, study, series or instance; returns an operation."""
    name = _store(groups)
    emulator.require_store(name)
    body = json_body(request)
    storage_class = storage_class_of(body.get("blobStorageSettings"))
    study, series, sop = groups.get("study"), groups.get("series"), groups.get("instance")
    if study and not emulator.repository.find_instances(str(name), study, series, sop):
        raise not_found(f"{_resource_path(study, series, sop)} does not exist in {name}")

    def run(context: Any) -> dict[str, Any] | None:
        changed = emulator.repository.set_storage_class(str(name), storage_class, study, series, sop)
        context.record_success(changed)
        return None

    operation = emulator.operations.start(
        name.dataset,
        version,
        "SetBlobStorageSettings",
        "dicom.SetBlobStorageSettingsResponse",
        base_url(emulator, request),
        run,
    )
    return json_response(operation)


def get_storage_info(emulator: Emulator, request: Request, version: str, groups: dict[str, str]) -> Response:
    name = _store(groups)
    emulator.require_store(name)
    records = emulator.repository.find_instances(str(name), groups["study"], groups["series"], groups["instance"])
    if not records:
        raise not_found(f"{_resource_path(groups['study'], groups['series'], groups['instance'])} does not exist")
    record = records[0]
    return json_response(
        {
            "referencedResource": f"{name}/dicomWeb{_resource_path(record.study, record.series, record.sop)}",
            "blobStorageInfo": {
                "sizeBytes": str(record.size),
                "storageClass": record.storage_class,
                "storageClassUpdateTime": record.storage_class_time,
            },
        }
    )


def _resource_path(study: str, series: str | None, sop: str | None) -> str:
    path = f"/studies/{study}"
    if series:
        path += f"/series/{series}"
    if sop:
        path += f"/instances/{sop}"
    return path


# ----- operations -----


def get_operation(emulator: Emulator, request: Request, version: str, groups: dict[str, str]) -> Response:
    name = OperationName(_dataset(groups), groups["operation"])
    body = emulator.operations.get(str(name))
    if body is None:
        raise not_found(f"operation {name} does not exist")
    return json_response(body)


def list_operations(emulator: Emulator, request: Request, version: str, groups: dict[str, str]) -> Response:
    dataset = _dataset(groups)
    emulator.require_dataset(dataset)
    offset, size = page(request)
    items = emulator.operations.list_operations(dataset, offset, size + 1)
    body: dict[str, Any] = {"operations": items[:size]} if items else {}
    if len(items) > size:
        body["nextPageToken"] = str(offset + size)
    return json_response(body)


def cancel_operation(emulator: Emulator, request: Request, version: str, groups: dict[str, str]) -> Response:
    name = OperationName(_dataset(groups), groups["operation"])
    if not emulator.operations.cancel(str(name)):
        raise not_found(f"operation {name} does not exist")
    return json_response({})


def operation_logs(emulator: Emulator, request: Request, name: str) -> Response:
    """The per-item failures of an operation (what ``logsUrl`` points at)."""
    errors = emulator.operations.errors(name)
    if errors is None:
        raise not_found(f"operation {name} does not exist")
    return json_response(
        {
            "operation": name,
            "errors": [{"resource": resource, "reason": reason} for resource, reason in errors],
        }
    )

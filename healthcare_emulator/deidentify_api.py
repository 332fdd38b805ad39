"""``datasets.deidentify`` and ``dicomStores.deidentify``: de-identified copies as an operation.

- ``dicomStores.deidentify`` ``{destinationStore, config | gcsConfigUri, filterConfig}``: the destination
  dataset and store must exist, in the source's project and location (DeidentifyDicomStoreRequest reference;
  ``gcloud healthcare dicom-stores deidentify --help``: "must already exist, or the request will fail").
- ``datasets.deidentify`` ``{destinationDataset, config | gcsConfigUri}``: the destination dataset must not
  exist; it is created with a de-identified copy of every DICOM store of the source (same store ids).

The operation counts one success per instance written and one failure per instance that could not be
de-identified or stored (one ``DeidentifyLogEntry`` each, at ``logsUrl``). New UIDs are derived from the original
and the destination's name, so every operation into one destination maps an original UID to the same new UID
(a study sent in several batches stays one study). Google documents that UIDs are regenerated, not how they
map across operations: docs/emulator.md says what that leaves open.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from werkzeug.wrappers import Request, Response

from healthcare_emulator.deidentify import (
    DeidentifyConfigError,
    DicomDeidConfig,
    deidentify_instance,
    parse_config,
    uid_mapper,
)
from healthcare_emulator.errors import already_exists, invalid_argument, unimplemented
from healthcare_emulator.exporter import select_instances
from healthcare_emulator.gcs import StorageError
from healthcare_emulator.instances import InvalidInstanceError, parse_instance
from healthcare_emulator.names import DatasetName, StoreName, validate_id
from healthcare_emulator.operations import Job, OperationContext, OperationFailedError
from healthcare_emulator.repository import StoreOutcome
from healthcare_emulator.rest import base_url, json_body, json_response, require_storage, timed_job
from healthcare_emulator.service import Emulator

_SUMMARY = "deidentify.DeidentifySummary"


@dataclass(frozen=True)
class _Copy:
    source: StoreName
    destination: StoreName


def deidentify_store(emulator: Emulator, request: Request, version: str, groups: dict[str, str]) -> Response:
    source = StoreName(DatasetName(groups["project"], groups["location"], groups["dataset"]), groups["store"])
    emulator.require_store(source)
    body = json_body(request)
    destination = _parse_store_name(body.get("destinationStore"))
    if (destination.dataset.project, destination.dataset.location) != (source.dataset.project, source.dataset.location):
        raise invalid_argument("destinationStore must be in the source's project and location")
    if destination == source:
        raise invalid_argument("destinationStore must differ from the source store")
    emulator.require_dataset(destination.dataset)
    config = _config(emulator, body)
    filter_config = body.get("filterConfig") or {}
    filter_uri = filter_config.get("resourcePathsGcsUri") if isinstance(filter_config, dict) else None
    if filter_uri is not None:
        if not str(filter_uri).startswith("gs://"):
            raise invalid_argument("filterConfig.resourcePathsGcsUri must be a gs:// URI")
        require_storage(emulator)
    emulator.require_store(destination)
    job = timed_job(emulator, str(source), "DeidentifyDicomStore",
                    _job(emulator, [_Copy(source, destination)], config, str(destination), filter_uri))  # fmt: skip
    operation = emulator.operations.start(
        source.dataset, version, "DeidentifyDicomStore", _SUMMARY, base_url(emulator, request), job
    )
    return json_response(operation)


def deidentify_dataset(emulator: Emulator, request: Request, version: str, groups: dict[str, str]) -> Response:
    source = DatasetName(groups["project"], groups["location"], groups["dataset"])
    source_body = emulator.require_dataset(source)
    body = json_body(request)
    destination = _parse_dataset_name(body.get("destinationDataset"))
    if (destination.project, destination.location) != (source.project, source.location):
        raise invalid_argument("destinationDataset must be in the source's project and location")
    config = _config(emulator, body)
    resource = {"name": str(destination), "timeZone": source_body.get("timeZone", "UTC")}
    if not emulator.repository.insert_resource("datasets", str(destination), str(destination.parent), resource):
        raise already_exists(f"destination dataset {destination} already exists; deidentify creates it")
    copies: list[_Copy] = []
    for store in emulator.repository.list_resources("stores", str(source)):
        store_id = str(store["name"]).rsplit("/", 1)[1]
        target = StoreName(destination, store_id)
        emulator.repository.insert_resource("stores", str(target), str(destination), {"name": str(target)})
        copies.append(_Copy(StoreName(source, store_id), target))
    job = _job(emulator, copies, config, str(destination), None)
    operation = emulator.operations.start(
        source,
        version,
        "DeidentifyDataset",
        _SUMMARY,
        base_url(emulator, request),
        job,
        service="dataset.DatasetService",
    )
    return json_response(operation)


def _config(emulator: Emulator, body: dict[str, Any]) -> DicomDeidConfig:
    """The DicomConfig of ``config`` or of the JSON object at ``gcsConfigUri`` (not both)."""
    raw = body.get("config")
    uri = body.get("gcsConfigUri")
    if raw is not None and uri:
        raise invalid_argument("give either config or gcsConfigUri, not both")
    if uri:
        raw = _read_config(emulator, str(uri))
    try:
        return parse_config(raw)
    except DeidentifyConfigError as exc:
        if exc.unimplemented:
            raise unimplemented(f"{exc} by the emulator") from exc
        raise invalid_argument(str(exc)) from exc


def _read_config(emulator: Emulator, uri: str) -> Any:
    if not uri.startswith("gs://") or "/" not in uri[len("gs://") :]:
        raise invalid_argument(f"gcsConfigUri must be gs://bucket/object, got {uri!r}")
    require_storage(emulator)
    bucket, _, name = uri[len("gs://") :].partition("/")
    try:
        return json.loads(emulator.gcs.read(bucket, name))
    except StorageError as exc:
        raise invalid_argument(f"cannot read gcsConfigUri: {exc}") from exc
    except ValueError as exc:
        raise invalid_argument(f"gcsConfigUri {uri} is not a JSON DeidentifyConfig") from exc


def _job(emulator: Emulator, copies: list[_Copy], config: DicomDeidConfig, salt: str, filter_uri: str | None) -> Job:
    new_uid = uid_mapper(salt)
    repository = emulator.repository

    def run(context: OperationContext) -> dict[str, Any] | None:
        context.partial_success = True  # a de-id that stored some instances succeeds, its failures counted
        work = [
            (copy, record)
            for copy in copies
            for record in select_instances(repository, str(copy.source), filter_uri, emulator.gcs)
        ]
        context.set_pending(len(work))
        for copy, record in work:
            if context.cancel_requested:
                raise OperationFailedError("CANCELLED", "operation cancelled by request")
            resource = f"{copy.source}/dicomWeb/studies/{record.study}/series/{record.series}/instances/{record.sop}"
            try:
                data = deidentify_instance(repository.read_instance(record), config, new_uid)
                instance = parse_instance(data)
            except InvalidInstanceError as exc:
                context.record_failure(resource, f"the de-identified instance is not storable: {exc}")
                continue
            except Exception as exc:  # pydicom cannot read or write it: one failed instance, never a crash
                context.record_failure(resource, f"cannot de-identify: {type(exc).__name__}")
                continue
            if repository.store_instance(str(copy.destination), instance, data, "STANDARD") is StoreOutcome.CONFLICT:
                context.record_failure(resource, "the destination holds other content under the new UIDs")
                continue
            context.record_success()
        return None

    return run


def _parse_store_name(value: Any) -> StoreName:
    parts = str(value or "").split("/")
    if len(parts) != 8 or parts[0::2] != ["projects", "locations", "datasets", "dicomStores"]:
        raise invalid_argument(
            "destinationStore must be projects/P/locations/L/datasets/D/dicomStores/S, got " + repr(value)
        )
    dataset = DatasetName(parts[1], parts[3], validate_id("dataset id", parts[5]))
    return StoreName(dataset, validate_id("dicomStoreId", parts[7]))


def _parse_dataset_name(value: Any) -> DatasetName:
    parts = str(value or "").split("/")
    if len(parts) != 6 or parts[0::2] != ["projects", "locations", "datasets"]:
        raise invalid_argument("destinationDataset must be projects/P/locations/L/datasets/D, got " + repr(value))
    return DatasetName(parts[1], parts[3], validate_id("datasetId", parts[5]))

"""The ErrorLog adapter on google-api-python-client's logging v2 client, against the emulator's Cloud Logging
surface: an import's per-file errors with the API's reasons, bounded and paged; the error policy on 403/503."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from google.cloud import storage

from devstack.synthetic import generate_dataset
from dicomflow.adapters.cloud_logging import GoogleErrorLog, build_logging_client
from dicomflow.errors import PermissionDeniedError
from dicomflow.retry import RetryPolicy
from tests.integration.conftest import LocalServices, StoreRef, upload, wait_for_operation

pytestmark = pytest.mark.integration

_FAST = RetryPolicy(attempts=3, initial_delay=0.01, max_delay=0.05)


def _faults(services: LocalServices, method: str, body: dict[str, Any] | None = None) -> None:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{services.healthcare_url}/emulator/faults", data=data, method=method)
    request.add_header("Content-Type", "application/json")
    urllib.request.urlopen(request, timeout=10).close()


@pytest.fixture
def error_log(services: LocalServices) -> Iterator[GoogleErrorLog]:
    yield GoogleErrorLog(build_logging_client(services.healthcare_url), _FAST)
    _faults(services, "DELETE")


@pytest.fixture
def failed_import(api_v1: Any, store: StoreRef, bucket: storage.Bucket) -> str:
    good = generate_dataset(1, 1, 1, seed=2601)[0]
    upload(bucket, {"in/good.dcm": good.data, **{f"in/bad{i}.dcm": b"not dicom" for i in range(5)}})
    started = (
        api_v1.projects().locations().datasets().dicomStores()
        .import_(name=store.name, body={"gcsSource": {"uri": f"gs://{bucket.name}/in/*.dcm"}}).execute()
    )  # fmt: skip
    operation = wait_for_operation(api_v1, started["name"])
    assert operation["metadata"]["counter"] == {"success": "1", "failure": "5"}
    return str(operation["name"])


def test_error_log_reads_each_failed_file_with_the_api_reason(
    error_log: GoogleErrorLog, failed_import: str, bucket: storage.Bucket
) -> None:
    errors = error_log.operation_errors(failed_import, limit=100)
    assert sorted(error.source for error in errors) == [f"gs://{bucket.name}/in/bad{i}.dcm" for i in range(5)]
    assert {(error.code, error.message) for error in errors} == {
        (3, "not a DICOM Part 10 file: no 'DICM' prefix after the 128-byte preamble")
    }


def test_error_log_stops_at_its_limit(error_log: GoogleErrorLog, failed_import: str) -> None:
    assert len(error_log.operation_errors(failed_import, limit=2)) == 2


def test_error_log_of_an_operation_without_entries_is_empty(error_log: GoogleErrorLog, store: StoreRef) -> None:
    assert error_log.operation_errors(f"{store.dataset_name}/operations/1", limit=10) == []


def test_error_log_retries_a_503_and_names_the_role_on_403(
    services: LocalServices, error_log: GoogleErrorLog, failed_import: str
) -> None:
    _faults(services, "POST", {"method": "POST", "path": "entries:list$", "status": 503, "count": 1})
    assert len(error_log.operation_errors(failed_import, limit=10)) == 5
    _faults(services, "POST", {"method": "POST", "path": "entries:list$", "status": 403, "count": 1})
    with pytest.raises(PermissionDeniedError) as denied:
        error_log.operation_errors(failed_import, limit=10)
    assert "roles/logging.viewer" in str(denied.value)

"""Operation lifecycle: counters, outcome, per-item errors, cancellation and restart recovery."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from healthcare_emulator.names import DatasetName
from healthcare_emulator.operations import OperationContext, OperationFailedError, OperationRunner
from healthcare_emulator.repository import Repository

DATASET = DatasetName("p", "l", "d")


def _wait(runner: OperationRunner, name: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        body = runner.get(name)
        assert body is not None
        if body.get("done"):
            return body
        time.sleep(0.01)
    raise AssertionError("operation did not finish")


def _start(runner: OperationRunner, job: Any) -> str:
    body = runner.start(DATASET, "v1", "ImportDicomData", "dicom.ImportDicomDataResponse", "http://h:1", job)
    return str(body["name"])


def test_operation_succeeds_with_counters_and_typed_response(tmp_path: Path) -> None:
    runner = OperationRunner(Repository(tmp_path))

    def job(context: OperationContext) -> None:
        context.set_pending(3)
        context.record_success(3)

    body = _wait(runner, _start(runner, job))
    assert body["response"] == {"@type": "type.googleapis.com/google.cloud.healthcare.v1.dicom.ImportDicomDataResponse"}
    assert body["metadata"]["counter"] == {"success": "3"}
    assert body["metadata"]["apiMethodName"] == "google.cloud.healthcare.v1.dicom.DicomService.ImportDicomData"
    operation_id = body["name"].rsplit("/", 1)[1]
    assert body["metadata"]["logsUrl"].startswith("http://h:1/logs/query;query=")
    assert body["metadata"]["logsUrl"].endswith(f"operation.id%3D%22{operation_id}%22?project=p")
    assert body["metadata"]["endTime"] >= body["metadata"]["createTime"]
    runner.shutdown()


def test_operation_with_failed_items_ends_with_error_and_keeps_every_reason(tmp_path: Path) -> None:
    runner = OperationRunner(Repository(tmp_path))

    def job(context: OperationContext) -> None:
        context.set_pending(40)
        for index in range(40):
            if index % 2:
                context.record_failure(f"gs://b/{index}.dcm", "not DICOM")
            else:
                context.record_success()

    name = _start(runner, job)
    body = _wait(runner, name)
    assert body["metadata"]["counter"] == {"success": "20", "failure": "20"}
    assert body["error"]["code"] == 3
    assert "20 of 40 items failed" in body["error"]["message"]
    assert len(body["error"]["details"][0]["sampleErrors"]) == 10
    errors = runner.errors(name)
    assert errors is not None
    assert [resource for resource, _ in errors] == [f"gs://b/{i}.dcm" for i in range(1, 40, 2)]
    runner.shutdown()


def test_operation_shows_pending_while_running(tmp_path: Path) -> None:
    runner = OperationRunner(Repository(tmp_path))
    release = threading.Event()

    def job(context: OperationContext) -> None:
        context.set_pending(2)
        context.record_success()
        release.wait(10)
        context.record_success()

    name = _start(runner, job)
    deadline = time.monotonic() + 5
    while (runner.get(name) or {})["metadata"].get("counter") != {"success": "1", "pending": "1"}:
        assert time.monotonic() < deadline, runner.get(name)
        time.sleep(0.01)
    release.set()
    assert _wait(runner, name)["metadata"]["counter"] == {"success": "2"}
    runner.shutdown()


def test_cancel_ends_a_running_operation_that_checks_for_it(tmp_path: Path) -> None:
    runner = OperationRunner(Repository(tmp_path))
    started = threading.Event()

    def job(context: OperationContext) -> None:
        started.set()
        while not context.cancel_requested:
            time.sleep(0.01)
        raise OperationFailedError("CANCELLED", "operation cancelled by request")

    name = _start(runner, job)
    started.wait(5)
    assert runner.cancel(name) is True
    body = _wait(runner, name)
    assert body["error"] == {"code": 1, "message": "operation cancelled by request"}
    assert body["metadata"]["cancelRequested"] is True
    assert runner.cancel(f"{DATASET}/operations/404") is False
    runner.shutdown()


def test_a_crashing_job_ends_its_operation_with_internal_error(tmp_path: Path) -> None:
    runner = OperationRunner(Repository(tmp_path))

    def job(context: OperationContext) -> None:
        raise KeyError("bug")

    body = _wait(runner, _start(runner, job))
    assert body["error"]["code"] == 13
    assert "KeyError" in body["error"]["message"]
    runner.shutdown()


def test_unfinished_operation_is_aborted_after_a_restart(tmp_path: Path) -> None:
    # GIVEN an operation persisted as not done (the process died while it ran)
    repository = Repository(tmp_path)
    name = f"{DATASET}/operations/7"
    repository.save_operation(name, str(DATASET), {"name": name, "metadata": {"createTime": "t"}})
    repository.close()
    # WHEN a new runner opens the same data directory
    runner = OperationRunner(Repository(tmp_path))
    # THEN the operation is done with ABORTED and says why
    body = runner.get(name)
    assert body is not None
    assert body["done"] is True
    assert body["error"]["code"] == 10
    assert "restart" in body["error"]["message"]
    runner.shutdown()


def test_operation_counter_is_written_even_when_every_count_is_zero(tmp_path: Path) -> None:
    # GIVEN a job that has nothing to do (a de-identification of a dataset without instances)
    runner = OperationRunner(Repository(tmp_path))
    # WHEN it runs
    body = _wait(runner, _start(runner, lambda context: None))
    # THEN the counter message is there, empty, as the real API's JSON has it
    assert body["metadata"]["counter"] == {}
    runner.shutdown()


def test_failed_items_become_cloud_logging_entries_of_the_store(tmp_path: Path) -> None:
    repository = Repository(tmp_path)
    runner = OperationRunner(repository)

    def job(context: OperationContext) -> None:
        context.set_pending(2)
        context.record_failure("gs://b/x.dcm", "not DICOM")
        context.record_success()

    body = runner.start(
        DATASET,
        "v1",
        "ImportDicomData",
        "dicom.ImportDicomDataResponse",
        "http://h:1",
        job,
        store=f"{DATASET}/dicomStores/s",
    )
    _wait(runner, body["name"])
    operation_id = body["name"].rsplit("/", 1)[1]
    [entry] = repository.log_entries(["p"])
    assert entry["logName"] == "projects/p/logs/healthcare.googleapis.com%2Fimport_dicom"
    assert entry["resource"] == {
        "type": "healthcare_dicom_store",
        "labels": {"project_id": "p", "location": "l", "dataset_id": "d", "dicom_store_id": "s"},
    }
    assert entry["severity"] == "ERROR"
    assert entry["operation"]["id"] == operation_id
    assert entry["insertId"] == f"{operation_id}-1"
    assert entry["jsonPayload"] == {
        "@type": "type.googleapis.com/google.cloud.healthcare.logging.ImportDicomLogEntry",
        "source": "gs://b/x.dcm",
        "error": {"code": 3, "message": "not DICOM"},
    }
    assert entry["receiveTimestamp"] >= entry["timestamp"]
    runner.shutdown()

"""LogEntry JSON of failed items: per-kind log and payload, labels of the item's store, persistence."""

from __future__ import annotations

from pathlib import Path

from healthcare_emulator.log_entries import LogSource, error_entry, logs_url, operation_filter
from healthcare_emulator.log_filter import parse_filter
from healthcare_emulator.repository import Repository

OPERATION = "projects/p/locations/l/datasets/d/operations/77"


def test_deidentify_entry_takes_the_labels_of_the_store_the_instance_is_in() -> None:
    resource = "projects/p/locations/l/datasets/d/dicomStores/src/dicomWeb/studies/1/series/2/instances/3"
    entry = error_entry(LogSource(OPERATION, "DeidentifyDataset"), 1, resource, "cannot", 3, "t1", "t2")
    assert entry["logName"] == "projects/p/logs/healthcare.googleapis.com%2Fdeidentify"
    assert entry["resource"]["labels"]["dicom_store_id"] == "src"
    assert entry["jsonPayload"]["@type"].endswith(".logging.DeidentifyLogEntry")
    assert entry["jsonPayload"]["resourceName"] == resource


def test_export_entry_names_the_instance_by_its_store_path() -> None:
    store = "projects/p/locations/l/datasets/d/dicomStores/s"
    entry = error_entry(
        LogSource(OPERATION, "ExportDicomData", store), 2, "/studies/1/series/2/instances/3", "x", 3, "a", "b"
    )
    assert entry["jsonPayload"]["resourceName"] == f"{store}/dicomWeb/studies/1/series/2/instances/3"
    assert entry["insertId"] == "77-2"


def test_operation_filter_selects_the_operation_entries_only() -> None:
    store = "projects/p/locations/l/datasets/d/dicomStores/s"
    mine = error_entry(LogSource(OPERATION, "ImportDicomData", store), 1, "gs://b/x", "x", 3, "a", "b")
    other = error_entry(LogSource(OPERATION[:-2] + "78", "ImportDicomData", store), 1, "gs://b/x", "x", 3, "a", "b")
    predicate = parse_filter(operation_filter(OPERATION))
    assert predicate(mine) and not predicate(other)
    assert logs_url("http://h:1/", OPERATION).startswith("http://h:1/logs/query;query=resource.labels.project_id")


def test_log_entries_survive_a_reopen_of_the_data_dir(tmp_path: Path) -> None:
    store = "projects/p/locations/l/datasets/d/dicomStores/s"
    entry = error_entry(
        LogSource(OPERATION, "ImportDicomData", store), 1, "gs://b/x", "x", 3, "2026-01-01T00:00:00Z", "b"
    )
    first = Repository(tmp_path)
    first.add_log_entries("p", [entry])
    first.close()
    reopened = Repository(tmp_path)
    assert reopened.log_entries(["p"]) == [entry]
    assert reopened.log_entries(["other"]) == []
    reopened.close()

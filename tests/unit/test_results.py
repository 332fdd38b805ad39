"""Batch results: the counts add up whatever the batch settled where."""

from __future__ import annotations

from datetime import UTC, datetime

from dicomflow.ledger.manifest import (
    ExportMarker,
    ExportOutcome,
    ExportStatus,
    FailureNote,
    ImportEntry,
    ImportMarker,
    Manifest,
    ManifestFile,
)
from dicomflow.ledger.results import summarize
from dicomflow.messages.records import PendingRecord

URI = "gs://src/up/**"


def _file(index: int) -> ManifestFile:
    record = PendingRecord("src", f"up/{index}.dcm", "7", 10, None, "1.1", "1.1.1", f"1.1.1.{index}",
                           "1.2.840.10008.1.2.1", "CT", "2026-12-02T10:00:00Z")  # fmt: skip
    return ManifestFile(record, URI)


def _manifest(files: int, *, gone: int = 0, duplicates: int = 0) -> Manifest:
    failures = tuple(FailureNote("src", f"up/gone{i}.dcm", "deleted", "generation 7 was deleted") for i in range(gone))
    return Manifest("b1", "2026-12-02T10:01:00Z", "projects/p/locations/l/datasets/d/dicomStores/s",
                    (ImportEntry(URI, "op1", files),), tuple(_file(i) for i in range(files)), failures,
                    duplicates)  # fmt: skip


def _adds_up(result: dict[str, object]) -> bool:
    parts = ("imported", "duplicates", "failed", "redriven")
    return result["files"] == sum(int(str(result[p])) for p in parts)


def test_a_file_gone_before_its_copy_counts_as_failed_not_as_a_missing_import() -> None:
    # GIVEN a batch whose flush imported 3 files and settled 1 (its source was deleted before the copy)
    manifest = _manifest(3, gone=1, duplicates=2)
    marker = ImportMarker("op1", "2026-12-02T10:02:00Z", {"success": "3"})
    result = summarize(manifest, [marker], [], datetime(2026, 12, 2, 10, 3, tzinfo=UTC))
    # THEN every imported file is counted as imported, the gone one as failed, and the counts add up
    assert (result["files"], result["imported"], result["failed"], result["duplicates"]) == (6, 3, 1, 2)
    assert result["outcome"] == "partial" and _adds_up(result)


def test_failures_and_redrives_at_reconcile_come_out_of_imported() -> None:
    manifest = _manifest(5)
    note = FailureNote("src", "up/1.dcm", "reconcile", "not in the store")
    marker = ImportMarker("op1", "2026-12-02T10:02:00Z", {"success": "3", "failure": "2"}, redriven=1,
                          failures=(note,))  # fmt: skip
    result = summarize(manifest, [marker], [], datetime(2026, 12, 2, 10, 3, tzinfo=UTC))
    assert (result["files"], result["imported"], result["failed"], result["redriven"]) == (5, 3, 1, 1)
    assert _adds_up(result)


def test_the_result_message_is_the_documented_contract() -> None:
    # GIVEN a batch of 2 files uploaded at 10:00:00 and 10:00:30, exported to one target, finished at 10:03
    manifest = _manifest(2)
    late = ManifestFile(PendingRecord("src", "up/late.dcm", "7", 10, None, "1.1", "1.1.1", "1.1.1.9",
                                      "1.2.840.10008.1.2.1", "CT", "2026-12-02T10:00:30Z"), URI)  # fmt: skip
    manifest = Manifest(manifest.batch_id, manifest.created, manifest.store, manifest.imports, (late, _file(0)), (), 0)
    marker = ImportMarker("op1", "2026-12-02T10:02:00Z", {"success": "2"})
    export = ExportMarker("dicom", ExportStatus.DONE, operation="op2", outcome=ExportOutcome.FAILED, reason="denied")
    result = summarize(manifest, [marker], [export], datetime(2026, 12, 2, 10, 3, tzinfo=UTC))
    # THEN subscribers find every documented field, with these values
    assert result == {
        "version": 1, "batch_id": "b1", "store": "projects/p/locations/l/datasets/d/dicomStores/s", "route": "default",
        "outcome": "partial", "files": 2, "imported": 2, "duplicates": 0, "redriven": 0, "failed": 0, "skipped": 0,
        "imports": [{"uri": URI, "operation": "op1", "files": 2}],
        "exports": [{"target": "dicom", "operation": "op2", "outcome": "failed", "reason": "denied", "success": 0,
                     "failure": 0, "failed_instances": []}],
        "timings": {"first_upload": "2026-12-02T10:00:00Z", "batch_created": "2026-12-02T10:01:00Z",
                    "finished": "2026-12-02T10:03:00+00:00", "seconds_upload_to_finished": 180.0},
    }  # fmt: skip


def test_a_batch_without_upload_times_reports_no_upload_timing() -> None:
    manifest = _manifest(1)
    undated = ManifestFile(PendingRecord("src", "up/x.dcm", "7", 10, None, "1.1", "1.1.1", "1.1.1.1",
                                         "1.2.840.10008.1.2.1", "CT", ""), URI)  # fmt: skip
    manifest = Manifest(manifest.batch_id, manifest.created, manifest.store, manifest.imports, (undated,), (), 0)
    result = summarize(manifest, [ImportMarker("op1", "t", {})], [], datetime(2026, 12, 2, 10, 3, tzinfo=UTC))
    assert result["timings"]["first_upload"] is None and "seconds_upload_to_finished" not in result["timings"]
    assert result["outcome"] == "success"


def test_a_deid_target_reports_its_counters_and_the_instances_it_could_not_take() -> None:
    # GIVEN a batch of 2 files whose de-id target de-identified 1 and failed 1 (with the API's reason)
    manifest = _manifest(2)
    marker = ImportMarker("op1", "2026-12-02T10:02:00Z", {"success": "2"})
    failed = ({"instance": "/studies/1.1/series/1.1.1/instances/1.1.1.2", "reason": "cannot de-identify"},)
    deid = ExportMarker("research", ExportStatus.DONE, operation="op3", outcome=ExportOutcome.SUCCEEDED,
                        counter={"success": "1", "failure": "1"}, failed_instances=failed)  # fmt: skip
    result = summarize(manifest, [marker], [deid], datetime(2026, 12, 2, 10, 3, tzinfo=UTC))
    # THEN the result names the target with its counters and the failed instance; the files count as imported
    assert result["exports"] == [{"target": "research", "operation": "op3", "outcome": "succeeded", "reason": None,
                                  "success": 1, "failure": 1, "failed_instances": list(failed)}]  # fmt: skip
    assert result["imported"] == 2 and result["failed"] == 0 and _adds_up(result)

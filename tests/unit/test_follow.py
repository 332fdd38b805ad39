"""Follow-up state machine with fakes: pending -> done -> reconciled -> exporting -> finished, and failures."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dicomflow.config.exports import ExportTarget, parse_export_targets
from dicomflow.config.settings import Settings
from dicomflow.errors import OperationPendingError
from dicomflow.ledger.failures import failure_notes
from dicomflow.ledger.manifest import ImportEntry, Manifest, ManifestFile
from dicomflow.ledger.store import BatchLedger
from dicomflow.messages.records import PendingRecord, WatchKind, WatchMessage
from dicomflow.stages.follow import Follower
from tests.fakes.services import FakeHealthcare, FakePublisher, FakeStore

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
STATE = "state-bucket"
MANIFEST = "dicomflow/batches/B1/manifest.json"
IMPORT_OP = "projects/p/locations/l/datasets/d/operations/1"
URI = "gs://src/up/**.dcm"


def _settings(targets: tuple[ExportTarget, ...] = (), **overrides: Any) -> Settings:
    return Settings(
        project_id="proj", location="l", dataset="d", dicom_store="s", source_buckets=("src",), state_bucket=STATE,
        export_targets=targets, **overrides,
    )  # fmt: skip


def _file(sop: str, attempt: int = 1, staged: str | None = None) -> ManifestFile:
    record = PendingRecord(
        bucket="src", name=f"up/{sop}.dcm", generation="1", size=10, crc32c=None, study_uid="1.1",
        series_uid="1.1.1", sop_uid=sop, transfer_syntax="1.2.840.10008.1.2.1", modality="CT",
        event_time="2026-11-28T11:59:00+00:00", attempt=attempt,
    )  # fmt: skip
    return ManifestFile(record, URI, staged)


class World:
    def __init__(self, files: list[ManifestFile], settings: Settings, skipped: tuple[str, ...] = ()) -> None:
        self.store = FakeStore({(f.record.bucket, f.record.name): b"DICM" for f in files})  # the sources exist
        self.healthcare = FakeHealthcare()
        imports = (ImportEntry(URI, IMPORT_OP, len(files)),)
        manifest = Manifest("B1", (NOW - timedelta(minutes=5)).isoformat(), self.healthcare.store_name, imports,
                            tuple(files), skipped=skipped)  # fmt: skip
        self.ledger = BatchLedger(self.store, STATE, "dicomflow/", now=lambda: NOW)
        assert self.ledger.create(manifest) == f"gs://{STATE}/{MANIFEST}"
        self.publisher = FakePublisher()
        self.settings = settings

    def follow(self, watch: WatchMessage) -> Any:
        follower = Follower(self.settings, store=self.store, healthcare=self.healthcare, publisher=self.publisher,
                            now=lambda: NOW)  # fmt: skip
        return follower.follow(watch)

    def watch(self, operation: str = IMPORT_OP, kind: str = "import", target: str | None = None) -> WatchMessage:
        return WatchMessage(operation, "B1", f"gs://{STATE}/{MANIFEST}", WatchKind(kind), target)


def test_a_running_operation_is_retried_until_it_is_too_old() -> None:
    world = World([_file("1.1.1.1")], _settings(operation_max_age_seconds=3600, follow_poll_seconds=0))
    created = (NOW - timedelta(seconds=60)).isoformat()
    world.healthcare.operations[IMPORT_OP] = {"name": IMPORT_OP, "metadata": {"createTime": created}}
    with pytest.raises(OperationPendingError):
        world.follow(world.watch())
    world.healthcare.operations[IMPORT_OP]["metadata"]["createTime"] = (NOW - timedelta(hours=2)).isoformat()
    result = world.follow(world.watch())
    assert result.state == "finished"
    [stuck] = world.publisher.bodies("dicom-failed")
    assert stuck["stage"] == "operation"


class PollClock:
    """A monotonic clock that only moves when the follower sleeps, and the sleeps it was asked for."""

    def __init__(self) -> None:
        self.t = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds


def _ending_after(world: World, gets: int) -> list[int]:
    """Make the import operation answer ``done: false`` to its first ``gets - 1`` operations.get calls."""
    calls: list[int] = []
    created = (NOW - timedelta(seconds=60)).isoformat()

    def get_operation(name: str) -> dict[str, Any]:
        calls.append(1)
        if len(calls) < gets:
            return {"name": name, "metadata": {"createTime": created}}
        return {"name": name, "done": True, "response": {}}

    world.healthcare.get_operation = get_operation  # type: ignore[method-assign]
    return calls


def test_a_running_operation_is_polled_within_one_delivery_until_it_ends() -> None:
    # GIVEN an import that is done at its 4th operations.get, and a poll window of 60 s every 2 s
    world = World([_file("1.1.1.1")], _settings(follow_poll_seconds=60, follow_interval_seconds=2))
    world.healthcare.stored = {("1.1", "1.1.1", "1.1.1.1")}
    calls, clock = _ending_after(world, 4), PollClock()
    follower = Follower(world.settings, store=world.store, healthcare=world.healthcare, publisher=world.publisher,
                        now=lambda: NOW, clock=clock, sleep=clock.sleep)  # fmt: skip
    # WHEN one delivery follows it up
    result = follower.follow(world.watch())
    # THEN it noticed the end itself (no redelivery): three sleeps of one interval, four calls, batch finished
    assert (result.state, result.polls, len(calls)) == ("finished", 4, 4)
    assert clock.sleeps == [2, 2, 2]


def test_polling_hands_the_watch_back_to_redelivery_after_the_poll_window() -> None:
    # GIVEN an import that outlasts the 5 s window (interval 2 s)
    world = World([_file("1.1.1.1")], _settings(follow_poll_seconds=5, follow_interval_seconds=2))
    calls, clock = _ending_after(world, 100), PollClock()
    follower = Follower(world.settings, store=world.store, healthcare=world.healthcare, publisher=world.publisher,
                        now=lambda: NOW, clock=clock, sleep=clock.sleep)  # fmt: skip
    # WHEN one delivery follows it up THEN it raises for redelivery once the window is spent, its last wait cut
    # to the window's end: calls at 0, 2, 4 and 5 s
    with pytest.raises(OperationPendingError):
        follower.follow(world.watch())
    assert clock.sleeps == [2, 2, 1]
    assert len(calls) == 4
    assert world.publisher.bodies("dicom-results") == []


def test_reconcile_redrives_a_missing_file_and_reports_it_at_the_last_attempt() -> None:
    files = [_file("1.1.1.1"), _file("1.1.1.2"), _file("1.1.1.3", attempt=3)]
    world = World(files, _settings(max_attempts=3))
    world.healthcare.stored = {("1.1", "1.1.1", "1.1.1.1")}
    sample = {"resource": "gs://src/up/1.1.1.3.dcm", "error": {"message": "bad file"}}
    error = {"code": 3, "message": "2 of 3 items failed", "details": [{"sampleErrors": [sample]}]}
    world.healthcare.operations[IMPORT_OP] = {"name": IMPORT_OP, "done": True, "error": error}
    result = world.follow(world.watch())
    assert (result.redriven, result.failed) == (1, 1)
    [redriven] = world.publisher.bodies("dicom-pending")
    assert (redriven["sop_uid"], redriven["attempt"]) == ("1.1.1.2", 2)
    [failed] = world.publisher.bodies("dicom-failed")
    assert failed["name"] == "up/1.1.1.3.dcm" and "bad file" in failed["reason"]
    # a redelivered watch does not re-drive again
    world.follow(world.watch())
    assert len(world.publisher.bodies("dicom-pending")) == 1
    [result_message] = world.publisher.bodies("dicom-results")
    assert (result_message["outcome"], result_message["imported"]) == ("partial", 1)


def test_staged_copies_are_deleted_once_their_import_is_reconciled_and_messages_name_the_source() -> None:
    # GIVEN a staged import of two files whose copies sit in the staging prefix; one did not arrive
    staged = [f"gs://{STATE}/dicomflow/staging/B1/00000{i}.dcm" for i in range(2)]
    world = World([_file("1.1.1.1", staged=staged[0]), _file("1.1.1.2", attempt=3, staged=staged[1])],
                  _settings(max_attempts=3))  # fmt: skip
    for uri in staged:
        world.store.objects[(STATE, uri.removeprefix(f"gs://{STATE}/"))] = b"copy"
    world.healthcare.stored = {("1.1", "1.1.1", "1.1.1.1")}
    sample = {"resource": staged[1], "error": {"message": "checksum mismatch"}}
    error = {"code": 3, "message": "1 of 2 failed", "details": [{"sampleErrors": [sample]}]}
    world.healthcare.operations[IMPORT_OP] = {"name": IMPORT_OP, "done": True, "error": error}
    # WHEN the watch is followed (twice: redelivered)
    world.follow(world.watch())
    world.follow(world.watch())
    # THEN no copy is left, and the failure names the source object with the reason given for its copy
    assert not [name for bucket, name in world.store.objects if name.startswith("dicomflow/staging/")]
    [failed] = world.publisher.bodies("dicom-failed")
    assert (failed["bucket"], failed["name"]) == ("src", "up/1.1.1.2.dcm") and "checksum mismatch" in failed["reason"]


def test_a_file_deleted_after_intake_is_settled_once_not_redriven() -> None:
    world = World([_file("1.1.1.1"), _file("1.1.1.2")], _settings(max_attempts=3))
    del world.store.objects[("src", "up/1.1.1.2.dcm")]
    world.healthcare.stored = {("1.1", "1.1.1", "1.1.1.1")}
    result = world.follow(world.watch())
    assert (result.redriven, result.failed) == (0, 1)
    [failed] = world.publisher.bodies("dicom-failed")
    assert (failed["name"], failed["stage"], failed["attempt"]) == ("up/1.1.1.2.dcm", "deleted", 1)
    note = failure_notes(world.settings, world.store).read("src", "up/1.1.1.2.dcm", failed["generation"])
    assert note is not None and note.stage == "deleted"  # what verify reads instead of every batch
    [summary] = world.publisher.bodies("dicom-results")
    assert summary["files"] == summary["imported"] + summary["duplicates"] + summary["failed"] + summary["redriven"]


def test_the_result_counts_the_skipped_dicomdirs_of_the_batch_outside_its_files() -> None:
    world = World([_file("1.1.1.1"), _file("1.1.1.2")], _settings(), skipped=("gs://src/up/DICOMDIR",))
    world.healthcare.stored = {("1.1", "1.1.1", "1.1.1.1"), ("1.1", "1.1.1", "1.1.1.2")}
    world.follow(world.watch())
    [summary] = world.publisher.bodies("dicom-results")
    assert (summary["outcome"], summary["files"], summary["imported"], summary["skipped"]) == ("success", 2, 2, 1)
    assert summary["files"] == summary["imported"] + summary["duplicates"] + summary["failed"] + summary["redriven"]
    written = world.ledger.result("B1")
    assert written is not None and written.summary is not None and written.summary["skipped"] == 1


def test_exports_start_once_and_the_result_waits_for_them() -> None:
    targets = parse_export_targets(
        json.dumps(
            [{"name": "a", "gcs": "gs://exp/a", "mime_type": "image/png"}, {"name": "b", "bigquery": "bq://p.d.t"}]
        )
    )
    world = World([_file("1.1.1.1")], _settings(targets))
    world.healthcare.stored = {("1.1", "1.1.1", "1.1.1.1")}
    world.follow(world.watch())
    world.follow(world.watch())  # redelivered
    # THEN each target's export reaches the API with its destination, its MIME type and the batch's filter file
    batch_filter = {"resourcePathsGcsUri": f"gs://{STATE}/dicomflow/batches/B1/filter.txt"}
    assert world.healthcare.exports == [
        {"filterConfig": batch_filter, "gcsDestination": {"uriPrefix": "gs://exp/a", "mimeType": "image/png"}},
        {
            "filterConfig": batch_filter,
            "bigqueryDestination": {"tableUri": "bq://p.d.t", "writeDisposition": "WRITE_APPEND"},
        },
    ]
    assert (
        world.store.objects[(STATE, "dicomflow/batches/B1/filter.txt")]
        == b"/studies/1.1/series/1.1.1/instances/1.1.1.1\n"
    )
    assert world.publisher.bodies("dicom-results") == []
    watches = world.publisher.bodies("dicom-operations")
    assert sorted(w["target"] for w in watches) == ["a", "b"]
    # WHEN the first export finishes THEN still no result; when the second fails, one result reports both
    world.follow(world.watch(watches[0]["operation"], "export", watches[0]["target"]))
    assert world.publisher.bodies("dicom-results") == []
    world.healthcare.operations[watches[1]["operation"]] = {"done": True, "error": {"code": 5, "message": "no table"}}
    world.follow(world.watch(watches[1]["operation"], "export", watches[1]["target"]))
    world.follow(world.watch(watches[1]["operation"], "export", watches[1]["target"]))  # redelivered
    [result] = world.publisher.bodies("dicom-results")
    assert result["outcome"] == "partial"
    assert sorted((e["target"], e["outcome"]) for e in result["exports"]) == [("a", "succeeded"), ("b", "failed")]


def test_no_instance_in_the_store_skips_the_export() -> None:
    targets = parse_export_targets(json.dumps([{"name": "a", "gcs": "gs://exp/a"}]))
    world = World([_file("1.1.1.1", attempt=3)], _settings(targets))
    world.healthcare.operations[IMPORT_OP] = {"done": True, "error": {"code": 3, "message": "failed"}}
    world.follow(world.watch())
    assert world.healthcare.exports == []
    [result] = world.publisher.bodies("dicom-results")
    assert result["outcome"] == "failed"
    assert result["exports"][0]["outcome"] == "skipped"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ('[{"name": "A", "gcs": "gs://b/x"}]', "name of lowercase"),
        ('[{"name": "a"}]', "exactly one of"),
        ('[{"name": "a", "gcs": "s3://b"}]', "gcs must be gs://"),
        ('[{"name": "a", "gcs": "gs://bkt/x", "mime_type": "text/plain"}]', "mime_type must be one of"),
        ('[{"name": "a", "bigquery": "bq://p.d.t", "write_disposition": "SOMETIMES"}]', "write_disposition"),
        ('[{"name": "a", "gcs": "gs://bkt/x"}, {"name": "a", "gcs": "gs://bkt/y"}]', "unique"),
        ("{}", "JSON list"),
        ("[", "not valid JSON"),
    ],
)
def test_export_targets_are_validated_with_clear_errors(raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_export_targets(raw)


def test_a_file_whose_uids_the_store_holds_with_other_content_is_a_conflict_at_once() -> None:
    # GIVEN an import of two files whose UIDs are both in the store, and an operation that failed one file
    world = World([_file("1.1.1.1"), _file("1.1.1.2")], _settings(max_attempts=3))
    world.store.objects[("src", "up/1.1.1.1.dcm")] = b"same bytes"
    world.store.objects[("src", "up/1.1.1.2.dcm")] = b"new bytes"
    world.healthcare.stored = {("1.1", "1.1.1", "1.1.1.1"), ("1.1", "1.1.1", "1.1.1.2")}
    world.healthcare.contents = {("1.1", "1.1.1", "1.1.1.1"): b"same bytes", ("1.1", "1.1.1", "1.1.1.2"): b"old bytes"}
    counter = {"success": "1", "failure": "1"}
    world.healthcare.operations[IMPORT_OP] = {"done": True, "metadata": {"counter": counter},
                                              "error": {"code": 3, "message": "1 of 2 failed"}}  # fmt: skip
    # WHEN the watch is followed up
    result = world.follow(world.watch())
    # THEN the other-content file is reported once as a conflict, not re-driven, not counted imported
    assert (result.redriven, result.failed) == (0, 1)
    [failed] = world.publisher.bodies("dicom-failed")
    assert (failed["name"], failed["stage"], failed["attempt"]) == ("up/1.1.1.2.dcm", "conflict", 1)
    assert "other content" in failed["reason"]
    [summary] = world.publisher.bodies("dicom-results")
    assert (summary["imported"], summary["failed"]) == (1, 1)


def test_an_aborted_import_compares_every_file_in_the_store_so_a_conflict_is_not_counted_imported() -> None:
    # GIVEN an import interrupted by a restart of the API (ABORTED: an error and no counter) of two files whose
    # UIDs are both in the store, one of them with other content (the store keeps the instance an earlier
    # batch imported): found by the soak (bench.soak), where such a conflict was counted imported
    world = World([_file("1.1.1.1"), _file("1.1.1.2")], _settings(max_attempts=3))
    world.store.objects[("src", "up/1.1.1.1.dcm")] = b"same bytes"
    world.store.objects[("src", "up/1.1.1.2.dcm")] = b"new bytes"
    world.healthcare.stored = {("1.1", "1.1.1", "1.1.1.1"), ("1.1", "1.1.1", "1.1.1.2")}
    world.healthcare.contents = {("1.1", "1.1.1", "1.1.1.1"): b"same bytes", ("1.1", "1.1.1", "1.1.1.2"): b"old bytes"}
    world.healthcare.operations[IMPORT_OP] = {"done": True, "metadata": {"counter": {}},
                                              "error": {"code": 10, "message": "operation interrupted"}}  # fmt: skip
    # WHEN the watch is followed up
    result = world.follow(world.watch())
    # THEN the other-content file is reported as a conflict, the other one counted imported
    [failed] = world.publisher.bodies("dicom-failed")
    assert (failed["name"], failed["stage"]) == ("up/1.1.1.2.dcm", "conflict")
    assert (result.redriven, result.failed) == (0, 1)
    [summary] = world.publisher.bodies("dicom-results")
    assert (summary["imported"], summary["failed"]) == (1, 1)


def test_an_import_without_failures_compares_no_content() -> None:
    # GIVEN both files in the store and an operation without failures (identical duplicates count as success)
    world = World([_file("1.1.1.1"), _file("1.1.1.2")], _settings())
    world.healthcare.stored = {("1.1", "1.1.1", "1.1.1.1"), ("1.1", "1.1.1", "1.1.1.2")}
    world.healthcare.operations[IMPORT_OP] = {"done": True, "metadata": {"counter": {"success": "2"}}, "response": {}}
    # WHEN followed up THEN nothing is retrieved (no stored content is known to the fake: a retrieval would fail)
    result = world.follow(world.watch())
    assert (result.redriven, result.failed) == (0, 0)
    assert world.publisher.bodies("dicom-failed") == []


def test_data_set_digest_ignores_the_file_meta_a_store_may_rewrite() -> None:
    import io

    import pydicom

    from devstack.synthetic import make_instance
    from dicomflow.dicom.content import same_content

    original = make_instance(study_uid="2.25.1", series_uid="2.25.2", sop_uid="2.25.3")
    dataset = pydicom.dcmread(io.BytesIO(original))
    dataset.file_meta.ImplementationVersionName = "STORE_REWROTE_ME"
    dataset.file_meta.SourceApplicationEntityTitle = "HEALTHCARE"
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    meta_rewritten = buffer.getvalue()
    assert meta_rewritten != original
    other = make_instance(study_uid="2.25.1", series_uid="2.25.2", sop_uid="2.25.3", patient_name="OTHER^NAME")
    assert same_content(original, meta_rewritten)
    assert not same_content(original, other)


def test_an_interrupted_export_is_started_again_and_the_result_waits_for_it() -> None:
    targets = parse_export_targets(json.dumps([{"name": "a", "gcs": "gs://exp/a"}]))
    world = World([_file("1.1.1.1")], _settings(targets))
    world.healthcare.stored = {("1.1", "1.1.1", "1.1.1.1")}
    world.follow(world.watch())
    [first] = world.publisher.bodies("dicom-operations")
    # WHEN the export is interrupted (ABORTED: the service restarted) THEN it is started again, same filter
    world.healthcare.operations[first["operation"]] = {"done": True, "error": {"code": 10, "message": "restart"}}
    world.follow(world.watch(first["operation"], "export", "a"))
    assert len(world.healthcare.exports) == 2 and world.healthcare.exports[0] == world.healthcare.exports[1]
    assert world.publisher.bodies("dicom-results") == []
    # AND a redelivery of the interrupted watch starts nothing more; the new operation's success finishes it
    world.follow(world.watch(first["operation"], "export", "a"))
    second = world.publisher.bodies("dicom-operations")[-1]
    assert len(world.healthcare.exports) == 2 and second["operation"] != first["operation"]
    world.follow(world.watch(second["operation"], "export", "a"))
    [result] = world.publisher.bodies("dicom-results")
    assert (result["outcome"], result["exports"][0]["outcome"]) == ("success", "succeeded")


def test_an_export_that_fails_for_its_own_reason_is_not_started_again() -> None:
    targets = parse_export_targets(json.dumps([{"name": "a", "gcs": "gs://exp/a"}]))
    world = World([_file("1.1.1.1")], _settings(targets))
    world.healthcare.stored = {("1.1", "1.1.1", "1.1.1.1")}
    world.follow(world.watch())
    [first] = world.publisher.bodies("dicom-operations")
    world.healthcare.operations[first["operation"]] = {"done": True, "error": {"code": 7, "message": "denied"}}
    world.follow(world.watch(first["operation"], "export", "a"))
    assert len(world.healthcare.exports) == 1
    [result] = world.publisher.bodies("dicom-results")
    assert result["exports"][0]["outcome"] == "failed"

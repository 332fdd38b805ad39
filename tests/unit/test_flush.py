"""Flush state machine with in-memory fakes: settling, dedupe, capacity, planning, acks and crash safety."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dicomflow.config.settings import Settings
from dicomflow.errors import InvalidRequestError, PermissionDeniedError, RetryableError
from dicomflow.ledger.failures import failure_notes
from dicomflow.ledger.manifest import ImportEntry, Manifest
from dicomflow.ledger.store import BatchLedger
from dicomflow.messages.records import PendingRecord, ReadyMarker, SkippedFile
from dicomflow.stages.flush import run_flush
from tests.fakes.services import FakeHealthcare, FakePublisher, FakeStore, FakeSubscriber

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
BUCKET = "src-bucket"


def _settings(**overrides: Any) -> Settings:
    base = {
        "project_id": "proj", "location": "us-central1", "dataset": "ds", "dicom_store": "store",
        "source_buckets": (BUCKET,), "state_bucket": "state-bucket", "settle_seconds": 30.0,
        "max_wait_seconds": 600.0, "flush_lease_seconds": 60,
    }  # fmt: skip
    return Settings(**{**base, **overrides})


def _record(name: str, age_seconds: float, generation: str = "1", attempt: int = 1) -> PendingRecord:
    return PendingRecord(
        bucket=BUCKET, name=name, generation=generation, size=100, crc32c=None, study_uid="1.2", series_uid="1.2.3",
        sop_uid=f"1.2.3.{abs(hash(name)) % 10**6}", transfer_syntax="1.2.840.10008.1.2.1", modality="CT",
        event_time=(NOW - timedelta(seconds=age_seconds)).isoformat(), attempt=attempt,
    )  # fmt: skip


class _AnyUri(dict[str, Exception]):
    """refuse_imports for every URI."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def __contains__(self, uri: object) -> bool:
        return True

    def __getitem__(self, uri: str) -> Exception:
        return self.error


class World:
    def __init__(self, objects: list[str]) -> None:
        self.store = FakeStore({(BUCKET, name): b"x" for name in objects})
        self.subscriber = FakeSubscriber()
        self.publisher = FakePublisher()
        self.healthcare = FakeHealthcare()

    def queue(self, *records: PendingRecord) -> None:
        for record in records:
            self.subscriber.put(record.to_json())

    def skip(self, name: str, age_seconds: float, generation: str = "1") -> SkippedFile:
        """Intake skipped the DICOMDIR ``name`` ``age_seconds`` ago (one delivery of its message)."""
        entry = SkippedFile(BUCKET, name, generation, (NOW - timedelta(seconds=age_seconds)).isoformat())
        self.subscriber.put(entry.to_json())
        return entry

    def manifest(self, batch_id: str | None) -> Any:
        return json.loads(self.store.objects[("state-bucket", f"dicomflow/batches/{batch_id}/manifest.json")])

    def busy(self, imports: int) -> None:
        """``imports`` imports of this store started by an earlier flush and not reconciled yet."""
        ledger = BatchLedger(self.store, "state-bucket", "dicomflow/", now=lambda: NOW)
        entries = tuple(ImportEntry(f"gs://{BUCKET}/x{i}/**", f"operations/busy-{i}", 1) for i in range(imports))
        ledger.create(Manifest("busy", NOW.isoformat(), self.healthcare.store_name, entries, ()))

    def flush(self, settings: Settings | None = None) -> Any:
        return run_flush(
            settings or _settings(), subscriber=self.subscriber, publisher=self.publisher, store=self.store,
            healthcare=self.healthcare, now=lambda: NOW,
        )  # fmt: skip


def test_flush_imports_settled_folders_and_acks_them() -> None:
    world = World(["up/a.dcm", "up/b.dcm", "old/c.dcm"])
    world.queue(_record("up/a.dcm", 60), _record("up/b.dcm", 45))
    report = world.flush()
    assert world.healthcare.imports == [f"gs://{BUCKET}/up/**.dcm"]
    assert (report.imports_started, report.imported_files, report.deferred) == (1, 2, 0)
    assert world.subscriber.leased == {} and world.subscriber.available == {}
    [watch] = world.publisher.bodies("dicom-operations")
    assert watch["kind"] == "import" and watch["batch_id"] == report.batch_id
    manifest = json.loads(world.store.objects[("state-bucket", f"dicomflow/batches/{report.batch_id}/manifest.json")])
    assert sorted(f["name"] for f in manifest["files"]) == ["up/a.dcm", "up/b.dcm"]


def test_flush_starts_each_import_with_the_configured_storage_class() -> None:
    world = World(["up/a.dcm"])
    world.queue(_record("up/a.dcm", 60))
    world.flush(_settings(blob_storage_class="COLDLINE"))
    assert world.healthcare.storage_classes == ["COLDLINE"]
    world.queue(_record("up/a.dcm", 60, generation="2"))
    world.flush()
    assert world.healthcare.storage_classes == ["COLDLINE", None]  # unset: the store's default class


def test_flush_leaves_a_folder_that_is_still_receiving_uploads() -> None:
    world = World(["busy/a.dcm", "busy/b.dcm", "calm/c.dcm"])
    world.queue(_record("busy/a.dcm", 120), _record("busy/b.dcm", 5), _record("calm/c.dcm", 300))
    report = world.flush()
    assert world.healthcare.imports == [f"gs://{BUCKET}/calm/**.dcm"]
    assert report.deferred == 2
    assert len(world.subscriber.available) == 2  # back for the next tick


def test_flush_takes_an_unsettled_folder_once_its_oldest_record_waited_too_long() -> None:
    world = World(["busy/a.dcm", "busy/b.dcm", "old/x.dcm"])
    world.queue(_record("busy/a.dcm", 700), _record("busy/b.dcm", 1))
    world.flush()
    assert world.healthcare.imports == [f"gs://{BUCKET}/busy/**.dcm"]


def test_flush_takes_everything_when_the_batch_is_full() -> None:
    world = World(["a/1.dcm", "a/2.dcm"])
    world.queue(_record("a/1.dcm", 1), _record("a/2.dcm", 1))
    world.flush(_settings(max_batch_files=2))
    assert len(world.healthcare.imports) == 1


def test_flush_dedupes_and_acks_every_delivery() -> None:
    world = World(["d/a.dcm"])
    world.queue(_record("d/a.dcm", 60), _record("d/a.dcm", 60), _record("d/a.dcm", 60))
    report = world.flush()
    assert (report.redelivered, report.duplicates) == (2, 0)  # deliveries of one record are not duplicate files
    assert len(world.subscriber.acked) == 3
    manifest = world.store.objects[("state-bucket", f"dicomflow/batches/{report.batch_id}/manifest.json")]
    assert len(json.loads(manifest)["files"]) == 1


def test_flush_imports_only_the_newest_generation_of_an_overwritten_object() -> None:
    world = World(["d/a.dcm", "old/x.dcm"])
    world.queue(_record("d/a.dcm", 60, generation="5"), _record("d/a.dcm", 60, generation="12"))
    report = world.flush()
    assert world.healthcare.imports == [f"gs://{BUCKET}/d/**.dcm"]
    manifest = world.store.objects[("state-bucket", f"dicomflow/batches/{report.batch_id}/manifest.json")]
    assert [f["generation"] for f in json.loads(manifest)["files"]] == ["12"]
    assert report.duplicates == 1
    assert len(world.subscriber.acked) == 2


def test_flush_in_never_mode_starts_no_more_than_the_free_operation_slots() -> None:
    objects = [f"s{i}/a.dcm" for i in range(4)] + [f"s{i}/old.dcm" for i in range(4)]
    world = World(objects)
    world.queue(*[_record(f"s{i}/a.dcm", 60) for i in range(4)])
    world.busy(3)
    report = world.flush(_settings(max_concurrent_operations=5, staging="never"))
    assert report.imports_started == 2
    assert report.deferred == 2
    assert len(world.subscriber.available) == 2


def test_flush_stages_files_scattered_among_old_ones_into_one_import() -> None:
    # GIVEN a drop folder of 1,000 imported files and 6 new ones in other old folders, and 1 free slot
    objects = [f"incoming/old{i:04d}.dcm" for i in range(1000)] + [f"s{i}/old.dcm" for i in range(3)]
    new = [f"incoming/new{i}.dcm" for i in range(3)] + [f"s{i}/new.dcm" for i in range(3)]
    world = World(objects + new)
    world.queue(*[_record(name, 60) for name in new])
    world.busy(4)
    report = world.flush()
    # THEN one import of the batch's staging prefix covers the six, copied at their generation; no old file
    [uri] = world.healthcare.imports
    assert uri == f"gs://state-bucket/dicomflow/staging/{report.batch_id}/**"
    assert sorted(src for src, _ in world.store.copies) == sorted((BUCKET, n, "1") for n in new)
    assert (report.imports_started, report.copies, report.deferred) == (1, 6, 0)
    assert report.listing_calls <= 12  # bounded by the pending files, not by the 1,000 old ones
    manifest = json.loads(world.store.objects[("state-bucket", f"dicomflow/batches/{report.batch_id}/manifest.json")])
    assert sorted(f["name"] for f in manifest["files"]) == sorted(new)  # the source, never the copy
    assert all(
        f["staged"].startswith(f"gs://state-bucket/dicomflow/staging/{report.batch_id}/") for f in manifest["files"]
    )
    assert len(world.subscriber.acked) == 6


def test_flush_keeps_a_whole_new_subtree_in_place_and_stages_the_stragglers() -> None:
    study = [f"study9/se1/{i}.dcm" for i in range(8)]
    world = World([*study, "old/a.dcm", "old/b.dcm", "old/old.dcm"])
    world.queue(*[_record(name, 60) for name in [*study, "old/a.dcm", "old/b.dcm"]])
    report = world.flush()
    assert world.healthcare.imports == [f"gs://{BUCKET}/study9/**.dcm",
                                        f"gs://state-bucket/dicomflow/staging/{report.batch_id}/**"]  # fmt: skip
    assert report.copies == 2 and {src[1] for src, _ in world.store.copies} == {"old/a.dcm", "old/b.dcm"}


def test_flush_stages_everything_when_only_one_slot_is_free() -> None:
    study = [f"study9/se1/{i}.dcm" for i in range(8)]
    world = World([*study, "old/a.dcm", "old/old.dcm"])
    world.queue(*[_record(name, 60) for name in [*study, "old/a.dcm"]])
    world.busy(4)
    report = world.flush()
    assert world.healthcare.imports == [f"gs://state-bucket/dicomflow/staging/{report.batch_id}/**"]
    assert report.copies == 9


def test_flush_always_stages_without_listing_anything() -> None:
    world = World(["a/1.dcm", "a/2.dcm"])
    world.queue(_record("a/1.dcm", 60), _record("a/2.dcm", 60))
    report = world.flush(_settings(staging="always"))
    assert (report.copies, report.listing_calls) == (2, 0)
    assert world.store.listings == 1  # the ledger's in-flight count; the source bucket is never listed


def test_flush_settles_a_file_deleted_before_its_copy_once() -> None:
    # GIVEN two scattered new files, one of which was overwritten (its pending generation is gone)
    world = World(["d/old.dcm", "d/a.dcm", "d/b.dcm"])
    world.store.source_generations[(BUCKET, "d/b.dcm")] = "9"
    world.queue(_record("d/a.dcm", 60), _record("d/b.dcm", 60))
    report = world.flush()
    # THEN it is reported once, as deleted, and acknowledged; the other is imported
    [failed] = world.publisher.bodies("dicom-failed")
    assert (failed["name"], failed["stage"]) == ("d/b.dcm", "deleted")
    assert failure_notes(_settings(), world.store).reported().holds(BUCKET, "d/b.dcm", failed["generation"])
    assert (report.copies, report.failed, len(world.subscriber.acked)) == (1, 1, 2)
    manifest = json.loads(world.store.objects[("state-bucket", f"dicomflow/batches/{report.batch_id}/manifest.json")])
    assert [f["name"] for f in manifest["files"]] == ["d/a.dcm"] and manifest["counts"]["failed"] == 1


def test_flush_stages_the_files_of_an_in_place_uri_the_api_refuses() -> None:
    world = World(["up/a.dcm", "up/b.dcm", "old/x.dcm"])
    world.queue(_record("up/a.dcm", 60), _record("up/b.dcm", 60))
    world.healthcare.refuse_imports[f"gs://{BUCKET}/up/**.dcm"] = InvalidRequestError("HTTP 400", 400)
    report = world.flush()
    assert world.healthcare.imports == [f"gs://state-bucket/dicomflow/staging/{report.batch_id}/**"]
    assert report.copies == 2 and len(world.subscriber.acked) == 2


def test_flush_removes_its_copies_and_gives_records_back_when_the_staged_import_is_refused() -> None:
    world = World(["d/old.dcm", "d/a.dcm", "d/b.dcm"])
    world.queue(_record("d/a.dcm", 60), _record("d/b.dcm", 60))
    denied = PermissionDeniedError("HTTP 403 (grant roles/healthcare.dicomEditor)", 403)
    world.healthcare.refuse_imports = _AnyUri(denied)
    with pytest.raises(PermissionDeniedError):
        world.flush()
    assert not [name for bucket, name in world.store.objects if "staging/" in name]
    assert len(world.subscriber.available) == 2 and world.subscriber.acked == []


def test_flush_with_no_free_slot_starts_nothing_and_gives_records_back() -> None:
    world = World(["a/1.dcm"])
    world.queue(_record("a/1.dcm", 60))
    world.busy(5)
    report = world.flush()
    assert (report.imports_started, report.deferred) == (0, 1)
    assert len(world.subscriber.available) == 1


def test_flush_gives_records_back_when_publishing_the_watch_fails() -> None:
    # GIVEN the import starts but the watch cannot be published (a crash at the worst moment)
    world = World(["a/1.dcm", "a/2.dcm"])
    world.queue(_record("a/1.dcm", 60), _record("a/2.dcm", 60))
    world.publisher.fail_topics.add("dicom-operations")
    with pytest.raises(RetryableError):
        world.flush()
    # THEN nothing is acknowledged: the next tick imports again (a harmless duplicate)
    assert world.subscriber.acked == []
    assert len(world.subscriber.available) == 2
    world.publisher.fail_topics.clear()
    world.flush()
    assert len(world.healthcare.imports) == 2
    assert len(world.subscriber.acked) == 2


def test_flush_defers_files_whose_import_could_not_start() -> None:
    world = World(["a/1.dcm", "a/old.dcm", "b/1.dcm", "b/old.dcm"])
    world.queue(_record("a/1.dcm", 60), _record("b/1.dcm", 60))
    world.healthcare.fail_imports = 1
    report = world.flush()
    assert report.imports_started == 0
    assert report.deferred == 2


def test_flush_stages_names_no_uri_can_address() -> None:
    world = World(["d/x[1].dcm", "d/x1.dcm", "d/y[2].dcm"])
    world.queue(_record("d/x[1].dcm", 60), _record("d/y[2].dcm", 60, generation="2"))
    report = world.flush(_settings(staging="never"))
    assert world.healthcare.imports == [f"gs://state-bucket/dicomflow/staging/{report.batch_id}/**"]
    assert sorted(src for src, _ in world.store.copies) == [(BUCKET, "d/x[1].dcm", "1"), (BUCKET, "d/y[2].dcm", "2")]
    assert len(world.subscriber.acked) == 2


def test_flush_drops_a_malformed_record_with_an_ack() -> None:
    world = World([])
    world.subscriber.put(b"{not json")
    report = world.flush()
    assert report.malformed == 1
    assert world.subscriber.acked == ["ack-1"]


def test_a_ready_marker_makes_its_folder_ready_at_once_and_later_files_wait() -> None:
    # GIVEN a study folder still receiving uploads (10 s ago), a ready marker sent after the first two files,
    # and a third file that arrived after the marker
    world = World(["st/se1/a.dcm", "st/se2/b.dcm", "st/se2/late.dcm", "other/x.dcm"])
    marker_time = (NOW - timedelta(seconds=8)).isoformat()
    world.queue(_record("st/se1/a.dcm", 10), _record("st/se2/b.dcm", 9), _record("st/se2/late.dcm", 2))
    world.subscriber.put(ReadyMarker(BUCKET, "st/", marker_time).to_json())
    # WHEN the flush runs (SETTLE_SECONDS 30 has not passed for the folder)
    report = world.flush()
    # THEN the two files the marker covers are imported; the late one waits; the marker is acknowledged
    manifest = json.loads(world.store.objects[("state-bucket", f"dicomflow/batches/{report.batch_id}/manifest.json")])
    assert sorted(f["name"] for f in manifest["files"]) == ["st/se1/a.dcm", "st/se2/b.dcm"]
    assert [PendingRecord.from_json(d).name for d in world.subscriber.available.values()] == ["st/se2/late.dcm"]
    assert len(world.subscriber.acked) == 3  # two records and the marker


def test_a_ready_marker_without_files_comes_back_until_it_is_too_old() -> None:
    world = World([])
    world.subscriber.put(ReadyMarker(BUCKET, "st/", (NOW - timedelta(seconds=5)).isoformat()).to_json())
    world.flush()
    assert len(world.subscriber.available) == 1 and world.subscriber.acked == []  # its files may still come
    world.subscriber.available.clear()
    world.subscriber.put(ReadyMarker(BUCKET, "st/", (NOW - timedelta(seconds=700)).isoformat()).to_json())
    world.flush()
    assert world.subscriber.available == {} and len(world.subscriber.acked) == 1  # expired after MAX_WAIT


def test_a_skipped_dicomdir_is_counted_once_in_the_batch_of_its_file_set_and_acked_with_it() -> None:
    # GIVEN a file-set (DICOMDIR at its root, images in nested folders) whose DICOMDIR message came twice
    images = [f"cd/PT0/ST0/SE{i}/IM{j}" for i in range(2) for j in range(2)]
    world = World([*images, "other/x.dcm"])
    world.queue(*[_record(name, 60) for name in images], _record("other/x.dcm", 60))
    world.skip("cd/DICOMDIR", 61)
    world.skip("cd/DICOMDIR", 61)  # a redelivery
    # WHEN the flush runs
    report = world.flush()
    # THEN one batch holds the images and counts the DICOMDIR once, outside its files; every message is acked
    manifest = world.manifest(report.batch_id)
    assert sorted(f["name"] for f in manifest["files"]) == sorted([*images, "other/x.dcm"])
    assert manifest["skipped"] == [f"gs://{BUCKET}/cd/DICOMDIR"]
    assert manifest["counts"]["skipped"] == 1 and manifest["counts"]["files"] == 5
    assert report.skipped == 1 and report.redelivered == 0
    assert world.subscriber.available == {} and len(world.subscriber.acked) == 7


def test_a_skipped_dicomdir_waits_for_its_files_and_is_counted_by_the_first_batch_that_takes_some() -> None:
    # GIVEN a file-set whose first series settled while its second still receives uploads
    world = World(["cd/SE1/IM1", "cd/SE2/IM1", "cd/SE2/IM2"])
    world.queue(_record("cd/SE1/IM1", 60), _record("cd/SE2/IM1", 5))
    world.skip("cd/DICOMDIR", 70)
    # WHEN the flush runs THEN the first series' batch counts the DICOMDIR and acks it
    first = world.flush()
    assert world.manifest(first.batch_id)["skipped"] == [f"gs://{BUCKET}/cd/DICOMDIR"]
    assert [PendingRecord.from_json(d).name for d in world.subscriber.available.values()] == ["cd/SE2/IM1"]
    # WHEN the second series settles (with a late file) THEN its batch counts nothing: the DICOMDIR was counted once
    world.subscriber.available.clear()
    world.queue(_record("cd/SE2/IM1", 60), _record("cd/SE2/IM2", 45))
    second = world.flush()
    assert second.batch_id != first.batch_id
    assert world.manifest(second.batch_id)["skipped"] == [] and second.skipped == 0


def test_a_skipped_dicomdir_whose_files_are_not_ready_goes_back_with_them() -> None:
    world = World(["cd/SE1/IM1"])
    world.queue(_record("cd/SE1/IM1", 2))
    world.skip("cd/DICOMDIR", 700)  # older than MAX_WAIT_SECONDS, yet its file is pending
    report = world.flush()
    assert report.batch_id is None and world.subscriber.acked == []
    assert len(world.subscriber.available) == 2


def test_a_skipped_dicomdir_of_a_batch_that_could_not_start_goes_back() -> None:
    world = World(["cd/SE1/IM1", "cd/old"])
    world.queue(_record("cd/SE1/IM1", 60))
    world.skip("cd/DICOMDIR", 60)
    world.busy(5)  # no free operation slot
    world.flush()
    assert world.subscriber.acked == [] and len(world.subscriber.available) == 2


def test_a_dicomdir_alone_comes_back_until_max_wait_then_is_acked_without_a_batch() -> None:
    # GIVEN a DICOMDIR whose file-set has no pending file (alone, or its files were imported before it arrived)
    world = World([])
    world.skip("cd/DICOMDIR", 590)
    # WHEN it is younger than MAX_WAIT_SECONDS THEN it comes back: its files may still reach intake
    world.flush()
    assert len(world.subscriber.available) == 1 and world.subscriber.acked == []
    # WHEN it waited MAX_WAIT_SECONDS THEN it is acknowledged: no batch, no result counts it
    world.subscriber.available.clear()
    world.skip("cd/DICOMDIR", 600)
    report = world.flush()
    assert world.subscriber.available == {} and len(world.subscriber.acked) == 1
    assert (report.batch_id, report.skipped) == (None, 0)


def test_flush_pulls_for_at_most_a_third_of_its_lease() -> None:
    # GIVEN FLUSH_LEASE_SECONDS 30 (the pending subscription's ack deadline is kept at it)
    world = World(["up/a.dcm"])
    world.queue(_record("up/a.dcm", 60))
    # WHEN a flush pulls THEN its pull stops 10 s after the first message arrived: what it pulled first is still
    # leased to it when the lease takes over, not delivered again to the next pass as a second batch's file
    world.flush(_settings(flush_lease_seconds=30))
    assert world.subscriber.pull_bounds == [10.0]

"""Order of effects: a watch is published before its imports are marked in flight; concurrent deliveries of
one watch re-drive, report and delete once (claim in the ledger first, then act)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from dicomflow.errors import OperationPendingError, RetryableError
from dicomflow.ledger.store import BatchLedger
from tests.fakes.services import FakeHealthcare
from tests.unit import test_flush
from tests.unit.test_conflict_policy import _conflicting_world
from tests.unit.test_follow import IMPORT_OP, NOW, World, _file, _settings


class _BlockingHealthcare(FakeHealthcare):
    """The first reconcile read blocks until released, so a second delivery arrives while the first works."""

    def __init__(self) -> None:
        super().__init__()
        self.inside, self.release = threading.Event(), threading.Event()

    def series_instances(self, study_uid: str, series_uid: str) -> set[str]:
        if not self.inside.is_set():
            self.inside.set()
            assert self.release.wait(10)
        return super().series_instances(study_uid, series_uid)


def _counts(world: World) -> tuple[int, int, int, int]:
    return (len(world.publisher.bodies("dicom-pending")), len(world.publisher.bodies("dicom-failed")),
            len(world.healthcare.delete_calls), len(world.publisher.bodies("dicom-results")))  # fmt: skip


@pytest.mark.parametrize("policy", ["report", "replace"])
def test_concurrent_deliveries_of_one_watch_redrive_report_and_delete_once(policy: str) -> None:
    # GIVEN a finished import of a file whose UIDs the store holds with other bytes (reported, or replaced)
    world = _conflicting_world(policy)
    blocking = _BlockingHealthcare()
    blocking.stored, blocking.contents = world.healthcare.stored, world.healthcare.contents
    blocking.operations = world.healthcare.operations
    world.healthcare = blocking
    # WHEN a second delivery of the watch arrives while the first is reconciling
    first = threading.Thread(target=world.follow, args=(world.watch(),))
    first.start()
    assert world.healthcare.inside.wait(10)
    with pytest.raises(OperationPendingError, match="another delivery"):
        world.follow(world.watch())
    assert _counts(world) == (0, 0, 0, 0)  # it did nothing
    world.healthcare.release.set()
    first.join(10)
    after_first = _counts(world)
    # and is redelivered (twice) after the first one finished
    world.follow(world.watch())
    world.follow(world.watch())
    # THEN every effect happened once
    assert _counts(world) == after_first
    # re-drives, reports, deletes of the stored instance, results
    assert after_first == ((1, 0, 1, 1) if policy == "replace" else (0, 1, 0, 1))


def test_a_delivery_that_fails_half_way_releases_its_claim_for_the_redelivery() -> None:
    world = World([_file("1.1.1.1"), _file("1.1.1.2")], _settings(max_attempts=3))
    world.healthcare.stored = {("1.1", "1.1.1", "1.1.1.1")}
    world.publisher.fail_topics.add("dicom-pending")  # the re-drive cannot be published now
    with pytest.raises(RetryableError):
        world.follow(world.watch())
    world.publisher.fail_topics.clear()
    result = world.follow(world.watch())  # at once: not after the claim timeout
    assert result.redriven == 1 and len(world.publisher.bodies("dicom-pending")) == 1


def test_concurrent_deliveries_of_a_stuck_operation_report_it_once() -> None:
    world = World([_file("1.1.1.1")], _settings(operation_max_age_seconds=60))
    created = (NOW - timedelta(hours=2)).isoformat()
    world.healthcare.operations[IMPORT_OP] = {"name": IMPORT_OP, "metadata": {"createTime": created}}
    world.ledger.claim_import("B1", IMPORT_OP)  # another delivery is reconciling it right now
    for _ in range(3):
        with pytest.raises(OperationPendingError):
            world.follow(world.watch())
    assert len(world.publisher.bodies("dicom-failed")) == 1


def test_a_failed_watch_publish_leaves_no_in_flight_mark_and_the_records_come_back() -> None:
    # GIVEN a flush whose watch cannot be published
    world = test_flush.World(["up/a.dcm", "old/c.dcm"])
    world.queue(test_flush._record("up/a.dcm", 60))
    world.publisher.fail_topics.add("dicom-operations")
    with pytest.raises(RetryableError):
        world.flush()
    # THEN no import of the store counts as in flight (no slot held for hours), and the record comes back
    ledger = BatchLedger(world.store, "state-bucket", "dicomflow/", now=lambda: test_flush.NOW)
    assert ledger.imports_in_flight(world.healthcare.store_name, 3600) == 0
    assert len(world.subscriber.available) == 1
    # WHEN the publish works again THEN the next flush imports it, with all of its concurrency
    world.publisher.fail_topics.clear()
    report = world.flush(test_flush._settings(max_concurrent_operations=1))
    assert report.running_before == 0 and report.imports_started == 1
    assert ledger.imports_in_flight(world.healthcare.store_name, 3600) == 1

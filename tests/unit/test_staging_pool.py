"""Staged copies keep up with a slow Cloud Storage: up to COPY_WORKERS rewrites in flight at once."""

from __future__ import annotations

import threading

from dicomflow.batching import staging
from dicomflow.batching.staging import StagingArea, delete_copies, stage
from dicomflow.messages.records import PendingRecord
from dicomflow.retry import RetryPolicy
from tests.fakes.gathering import Gathering
from tests.fakes.services import FakeStore


class CountingStore(FakeStore):
    """Rewrites and deletes held until ``gathering.size`` of them are in flight at once, the most counted."""

    def __init__(self, objects: dict[tuple[str, str], bytes], at_once: int) -> None:
        super().__init__(objects)
        self.gathering = Gathering(at_once)
        self._lock = threading.Lock()

    def copy(self, bucket: str, name: str, generation: str, to_bucket: str, to_name: str) -> None:
        with self.gathering.call(), self._lock:
            super().copy(bucket, name, generation, to_bucket, to_name)

    def delete(self, bucket: str, name: str) -> bool:
        with self.gathering.call(), self._lock:
            return super().delete(bucket, name)


def _records(count: int) -> list[PendingRecord]:
    return [
        PendingRecord(bucket="src", name=f"drop/{n}.dcm", generation="1", size=1, crc32c=None, study_uid="1",
                      series_uid="1.1", sop_uid=f"1.1.{n}", transfer_syntax="1.2.840.10008.1.2.1", modality="CT",
                      event_time="2026-12-06T00:00:00+00:00")
        for n in range(count)
    ]  # fmt: skip


def test_copies_and_their_deletes_run_up_to_copy_workers_at_once() -> None:
    # GIVEN 500 files to stage from a store whose rewrites wait until 17 of them are in flight
    records = _records(500)
    store = CountingStore({(r.bucket, r.name): b"DICM" for r in records}, at_once=17)
    # WHEN they are staged, then their copies deleted
    staged = stage(store, StagingArea.of("state", "dicomflow/", "B1"), records, RetryPolicy(attempts=1))
    copied_at_once = store.gathering.most
    store.gathering.reset()
    assert delete_copies(store, staged.copies.values()) == 500
    # THEN every file was copied, many more than the old 16 at once but never more than COPY_WORKERS
    assert len(staged.copies) == 500 and not staged.failed
    assert 16 < copied_at_once <= staging.COPY_WORKERS
    assert 16 < store.gathering.most <= staging.COPY_WORKERS

"""How late the follow-up learns that an operation ended, and what that costs, under Pub/Sub's redelivery timing.

The real ``Follower`` (its polling loop included) runs against in-memory fakes on a simulated clock: a
delivery that raises (operation not done) is redelivered after the retry policy's backoff, modelled as
``minimum x 2^(n-1)`` capped at ``maximum`` (Pub/Sub documents "exponential" between the two bounds, best effort,
not the factor); each ``operations.get`` costs ``--get-ms`` of simulated time. Operations last ``L x U(0.9, 1.1)``
seconds, ``--runs`` of them per length, each watch first delivered 1 s after the operation started.

Variants: redelivery only (FOLLOW_POLL_SECONDS=0) with Terraform's old retry policy (10..600 s) and with the new one
(10..10 s), and the polling follow-up (FOLLOW_POLL_SECONDS 240, every FOLLOW_INTERVAL_SECONDS 2) with 10..10 s.
Per operation: the noticing delay (p50/p95/max), deliveries (invocations), operations.get calls, and
function-seconds (time deliveries spent running).

    python -m bench.follow_up [--runs 200] [--get-ms 60]
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from dicomflow.config.settings import Settings
from dicomflow.errors import OperationPendingError
from dicomflow.ledger.manifest import ImportEntry, Manifest, ManifestFile
from dicomflow.ledger.store import BatchLedger
from dicomflow.messages.records import PendingRecord, WatchKind, WatchMessage
from dicomflow.stages.follow import Follower
from tests.fakes.services import FakeHealthcare, FakePublisher, FakeStore

EPOCH = datetime(2026, 12, 6, tzinfo=UTC)
OPERATION = "projects/p/locations/l/datasets/d/operations/1"
STATE = "state"


@dataclass(frozen=True)
class Variant:
    name: str
    poll_seconds: float
    interval_seconds: float
    min_backoff: float
    max_backoff: float


VARIANTS = (
    Variant("redelivery only, backoff 10..600 s (before)", 0, 2, 10, 600),
    Variant("redelivery only, backoff 10..10 s", 0, 2, 10, 10),
    Variant("poll 240 s every 2 s, backoff 10..10 s (now)", 240, 2, 10, 10),
)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


class TimedOperation(FakeHealthcare):
    """An import that is done once the simulated clock reaches ``end``; each get costs ``get_seconds``."""

    def __init__(self, clock: Clock, end: float, get_seconds: float) -> None:
        super().__init__()
        self.clock, self.end, self.get_seconds = clock, end, get_seconds
        self.gets = 0
        self.seen_done_at: float | None = None

    def get_operation(self, name: str) -> dict[str, Any]:
        self.gets += 1
        self.clock.sleep(self.get_seconds)
        if self.clock.t < self.end:
            return {"name": name, "metadata": {"createTime": EPOCH.isoformat()}}
        if self.seen_done_at is None:
            self.seen_done_at = self.clock.t
        return {"name": name, "done": True, "response": {}}


def _follow_once(variant: Variant, length: float, get_seconds: float) -> tuple[float, int, int, float]:
    """(noticing delay, deliveries, operations.get calls, function-seconds) of one operation."""
    clock = Clock()
    store, publisher = FakeStore({("src", "a.dcm"): b"DICM"}), FakePublisher()
    healthcare = TimedOperation(clock, length, get_seconds)
    record = PendingRecord(bucket="src", name="a.dcm", generation="1", size=4, crc32c=None, study_uid="1",
                           series_uid="1.1", sop_uid="1.1.1", transfer_syntax="1.2.840.10008.1.2.1", modality="CT",
                           event_time=EPOCH.isoformat())  # fmt: skip
    healthcare.stored = {("1", "1.1", "1.1.1")}
    manifest = Manifest("B1", EPOCH.isoformat(), healthcare.store_name, (ImportEntry("gs://src/**", OPERATION, 1),),
                        (ManifestFile(record, "gs://src/**", None),))  # fmt: skip
    uri = BatchLedger(store, STATE, "dicomflow/", now=lambda: EPOCH).create(manifest)
    settings = Settings(project_id="proj", location="l", dataset="d", dicom_store="s", source_buckets=("src",),
                        state_bucket=STATE, follow_poll_seconds=variant.poll_seconds,
                        follow_interval_seconds=variant.interval_seconds)  # fmt: skip
    follower = Follower(settings, store=store, healthcare=healthcare, publisher=publisher,
                        now=lambda: EPOCH + timedelta(seconds=clock.t), clock=clock, sleep=clock.sleep)  # fmt: skip
    watch = WatchMessage(OPERATION, "B1", uri, WatchKind.IMPORT)
    clock.t, deliveries, busy = 1.0, 0, 0.0
    while True:
        deliveries += 1
        started = clock.t
        try:
            follower.follow(watch)
        except OperationPendingError:
            busy += clock.t - started
            clock.sleep(min(variant.min_backoff * 2 ** (deliveries - 1), variant.max_backoff))
            continue
        busy += clock.t - started
        assert healthcare.seen_done_at is not None
        return healthcare.seen_done_at - length, deliveries, healthcare.gets, busy


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--get-ms", type=float, default=60.0, help="operations.get latency (the cloud profile's p50)")
    args = parser.parse_args()
    print(f"follow-up: {args.runs} operations per length, operations.get {args.get_ms:g} ms, simulated Pub/Sub "
          f"redelivery; {platform.machine()} {platform.python_version()}, {datetime.now(UTC):%Y-%m-%d}")  # fmt: skip
    print(f"{'operation':<11}{'variant':<47}{'notice p50':>11}{'p95':>8}{'max':>8}{'deliveries':>11}"
          f"{'gets':>7}{'fn-s':>8}")  # fmt: skip
    for length in (30.0, 600.0):
        rng = random.Random(24)
        lengths = [length * rng.uniform(0.9, 1.1) for _ in range(args.runs)]
        for variant in VARIANTS:
            runs = [_follow_once(variant, one, args.get_ms / 1000) for one in lengths]
            delays = [r[0] for r in runs]
            deliveries, gets, busy = (statistics.mean(r[k] for r in runs) for k in (1, 2, 3))
            print(f"{length:>6.0f} s   {variant.name:<47}{statistics.median(delays):>10.1f}s{_p(delays, 0.95):>7.1f}s"
                  f"{max(delays):>7.1f}s{deliveries:>11.1f}{gets:>7.0f}{busy:>8.0f}")  # fmt: skip


if __name__ == "__main__":
    main()

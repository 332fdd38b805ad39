"""Store queries of reconcile (and of verify and backfill, which use the same ``stored_instances``) at a cloud
latency: how long the "which of these files are in the store?" step takes for a 10,000-file batch over 1,000
series, today's code beside the old one (one QIDO-RS per series, one after another).

The store is an in-memory fake whose every QIDO-RS query sleeps ``--latency-ms`` (default 100 ms: the middle
of the 50-150 ms the issue names; an assumption, the API publishes no latency), so the figures are the
calls and their scheduling, not this machine. Layouts: the worst case for study-level queries (every series its
own study) and a realistic one (10 series per study).

    python -m bench.store_queries [--latency-ms 100] [--files 10000] [--series 1000]
"""

from __future__ import annotations

import argparse
import platform
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime

from dicomflow import pool
from dicomflow.messages.records import PendingRecord
from dicomflow.reconcile.import_check import present_instances
from tests.fakes.services import FakeHealthcare


class SlowStore(FakeHealthcare):
    """Every QIDO-RS query takes ``latency`` seconds; calls and the most in flight at once are counted."""

    def __init__(self, latency: float) -> None:
        super().__init__()
        self.latency = latency
        self.calls = 0
        self.in_flight = self.most = 0
        self._lock = threading.Lock()

    def _wait(self) -> None:
        with self._lock:
            self.calls += 1
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
        time.sleep(self.latency)
        with self._lock:
            self.in_flight -= 1

    def series_instances(self, study_uid: str, series_uid: str) -> set[str]:
        self._wait()
        return super().series_instances(study_uid, series_uid)

    def study_instances(self, study_uid: str) -> set[tuple[str, str]]:
        self._wait()
        return super().study_instances(study_uid)


def sequential_per_series(healthcare: FakeHealthcare, records: Iterable[PendingRecord]) -> set[tuple[str, str, str]]:
    """The old reconcile query: one series at a time (the baseline)."""
    by_series: dict[tuple[str, str], set[str]] = defaultdict(set)
    for record in records:
        by_series[(record.study_uid, record.series_uid)].add(record.sop_uid)
    present: set[tuple[str, str, str]] = set()
    for (study, series), wanted in by_series.items():
        present.update((study, series, sop) for sop in wanted & healthcare.series_instances(study, series))
    return present


def _records(files: int, series: int, series_per_study: int) -> list[PendingRecord]:
    per_series = files // series
    return [
        PendingRecord(
            bucket="src", name=f"{n}/{i}.dcm", generation="1", size=1, crc32c=None,
            study_uid=f"1.{n // series_per_study}", series_uid=f"1.{n // series_per_study}.{n}", sop_uid=f"1.{n}.{i}",
            transfer_syntax="1.2.840.10008.1.2.1", modality="CT", event_time="2026-12-06T00:00:00+00:00",
        )
        for n in range(series) for i in range(per_series)
    ]  # fmt: skip


def _run(name: str, query: object, records: list[PendingRecord], latency: float) -> tuple[float, int, int]:
    store = SlowStore(latency)
    store.stored = {(r.study_uid, r.series_uid, r.sop_uid) for r in records}
    started = time.perf_counter()
    present = query(store, records)  # type: ignore[operator]
    seconds = time.perf_counter() - started
    assert len(present) == len(records), f"{name}: {len(present)} of {len(records)} found"
    return seconds, store.calls, store.most


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--series", type=int, default=1_000)
    args = parser.parse_args()
    latency = args.latency_ms / 1000
    print(f"store queries: {args.files} files over {args.series} series, {args.latency_ms:g} ms per query, "
          f"pool of {pool.WORKERS}; {platform.machine()} {platform.python_version()}, "
          f"{datetime.now(UTC):%Y-%m-%d}")  # fmt: skip
    print(f"{'layout':<28}{'variant':<34}{'calls':>7}{'in flight':>11}{'seconds':>10}{'vs old':>9}")
    for series_per_study in (1, 10):
        records = _records(args.files, args.series, series_per_study)
        layout = f"{args.series // series_per_study} studies x {series_per_study} series"
        old = _run("old", sequential_per_series, records, latency)
        new = _run("new", present_instances, records, latency)
        for variant, (seconds, calls, most) in (("old: per series, one at a time", old),
                                                ("now: coarsest level, concurrent", new)):  # fmt: skip
            print(f"{layout:<28}{variant:<34}{calls:>7}{most:>11}{seconds:>10.2f}{old[0] / seconds:>8.1f}x")


if __name__ == "__main__":
    main()

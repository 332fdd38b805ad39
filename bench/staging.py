"""Staged copies at a cloud latency: ``staging.stage`` copying N files whose every rewrite takes ``--latency-ms``
(default 50 ms, the issue's figure; Cloud Storage publishes none), the pool of ``staging.COPY_WORKERS`` beside the
old 16, with the process's peak threads and resident memory during each run.

The object store is an in-memory fake whose ``copy`` sleeps the latency (thread-safe), so the figures are the
pool's scheduling and its cost in threads and memory, not this machine's disk.

    python -m bench.staging [--files 100000] [--latency-ms 50]
"""

from __future__ import annotations

import argparse
import platform
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from dicomflow.batching import staging
from dicomflow.batching.staging import StagingArea, stage
from dicomflow.messages.records import PendingRecord
from dicomflow.retry import RetryPolicy
from tests.fakes.services import FakeStore


class SlowRewrites(FakeStore):
    def __init__(self, objects: dict[tuple[str, str], bytes], latency: float) -> None:
        super().__init__(objects)
        self.latency = latency
        self._lock = threading.Lock()

    def copy(self, bucket: str, name: str, generation: str, to_bucket: str, to_name: str) -> None:
        time.sleep(self.latency)
        with self._lock:
            super().copy(bucket, name, generation, to_bucket, to_name)


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Peak:
    """Samples the process's thread count and resident memory every 50 ms while a run lasts."""

    def __init__(self) -> None:
        self.threads, self.rss = 0, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self.threads = max(self.threads, threading.active_count() - 1)  # not this sampler
            self.rss = max(self.rss, _rss_mb())

    def __enter__(self) -> Peak:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def _run(files: int, latency: float, workers: int) -> tuple[float, int, float, float]:
    records = [
        PendingRecord(bucket="src", name=f"drop/{n:07d}.dcm", generation="1", size=1, crc32c=None, study_uid="1",
                      series_uid="1.1", sop_uid=f"1.1.{n}", transfer_syntax="1.2.840.10008.1.2.1", modality="CT",
                      event_time="2026-12-06T00:00:00+00:00")
        for n in range(files)
    ]  # fmt: skip
    store = SlowRewrites({(r.bucket, r.name): b"DICM" for r in records}, latency)
    staging.COPY_WORKERS = workers
    before = _rss_mb()
    with Peak() as peak:
        started = time.perf_counter()
        staged = stage(store, StagingArea.of("state", "dicomflow/", "B1"), records, RetryPolicy(attempts=1))
        seconds = time.perf_counter() - started
    assert len(staged.copies) == files, f"{len(staged.copies)} of {files} copied"
    return seconds, peak.threads, before, peak.rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    args = parser.parse_args()
    latency, now = args.latency_ms / 1000, staging.COPY_WORKERS
    print(f"staging: {args.files} rewrites at {args.latency_ms:g} ms each; {platform.machine()} "
          f"{platform.python_version()}, {datetime.now(UTC):%Y-%m-%d}")  # fmt: skip
    print(f"{'copies in flight':<20}{'seconds':>10}{'copies/s':>10}{'threads':>9}{'RSS before':>12}{'RSS peak':>10}"
          f"{'vs 16':>8}")  # fmt: skip
    baseline = None
    for workers in (16, now):
        seconds, threads, before, rss = _run(args.files, latency, workers)
        baseline = baseline or seconds
        print(f"{workers:<20}{seconds:>10.1f}{args.files / seconds:>10.0f}{threads:>9}{before:>10.0f}MB"
              f"{rss:>8.0f}MB{baseline / seconds:>7.1f}x")  # fmt: skip
    staging.COPY_WORKERS = now


if __name__ == "__main__":
    main()

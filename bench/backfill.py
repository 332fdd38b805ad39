"""Backfill on the local stack.

Throughput of one worker (default): objects/s through ``dicomflow backfill`` (listing, header sniffing against
fake-gcs-server, one QIDO-RS per series against the emulator, publishing), with header reads on the pool (16 at
a time) beside one at a time, in one run.

    python -m bench.backfill [--objects 2000]

An archive end to end (``--archive N``): N instances and a few bad files written into the bucket before the
pipeline exists; the stack then starts on that data directory, its recovery backfills the bucket (the same
code as ``dicomflow backfill``), the pipeline imports everything; then a second backfill must queue nothing and
``dicomflow verify`` must find nothing missing; then one instance is deleted from the store (verify must see it
missing), one bad file is fixed and re-driven with ``dicomflow requeue``, and a third backfill must queue exactly
the deleted instance; verify at the end finds every instance in the store. Prints the time of each step.

    python -m bench.backfill --archive 10000
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from devstack import wiring
from devstack.client import storage_client
from devstack.processes import start_fake_gcs
from devstack.recovery import ENV_FILE
from devstack.stack import INCOMING_BUCKET, LocalStack, StackConfig
from devstack.synthetic import SyntheticInstance, generate_dataset
from dicomflow import pool as header_reads
from dicomflow.cli.backfill import backfill
from dicomflow.cli.context import Context, load
from dicomflow.cli.requeue import requeue
from dicomflow.cli.source import GcsPrefix
from dicomflow.cli.verify import verify


def archive(count: int) -> int:
    """The archive scenario: pre-existing files, recovery backfill, import, a second backfill, verify."""
    with tempfile.TemporaryDirectory(prefix="bench-archive-") as tmp:
        data_dir = Path(tmp)
        config = StackConfig.on_free_ports(settle_seconds=5, max_wait_seconds=60, flush_interval=2, data_dir=data_dir,
                                           extra_env=(("MAX_BATCH_FILES", "10000"),))  # fmt: skip
        gcs = start_fake_gcs(config.gcs_port, root=data_dir / "gcs")
        try:
            host = f"http://127.0.0.1:{config.gcs_port}"
            wiring.create_buckets(host, [INCOMING_BUCKET])
            bucket = storage_client(host).bucket(INCOMING_BUCKET)
            instances = generate_dataset(max(1, count // 40), 4, 10, seed=6)[:count]
            bad = {f"archive/bad/{i}.dcm": b"not dicom" for i in range(10)}
            started = time.monotonic()
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(lambda i: bucket.blob(f"archive/{i.relative_path}").upload_from_string(i.data),
                              instances))  # fmt: skip
                list(pool.map(lambda item: bucket.blob(item[0]).upload_from_string(item[1]), bad.items()))
            print(f"wrote {len(instances)} instances + {len(bad)} bad files in {time.monotonic() - started:.0f}s")
        finally:
            gcs.stop()
        stack = LocalStack(config)
        started = time.monotonic()
        endpoints = stack.start()
        try:
            assert stack.recovered.wait(3600), "recovery did not finish"
            queued_at = time.monotonic() - started
            print(f"stack up and archive backfilled (recovery) after {queued_at:.0f}s")
            ctx = load(endpoints.data_dir / ENV_FILE, into_process=False)
            where = GcsPrefix(INCOMING_BUCKET, "archive/")
            while True:
                report = backfill(ctx, where, dry_run=True, progress=False)
                if report.counts["in store"] >= len(instances):
                    break
                time.sleep(5)
            print(f"every instance in the store after {time.monotonic() - started:.0f}s")
            again = backfill(ctx, where, progress=False)
            print(f"second backfill: queued {again.counts['queued']}, in store {again.counts['in store']}, "
                  f"failed reported before (not again) {again.counts['failed (reported before)']}, "
                  f"failed reported now {again.counts['failed (reported)']}, {again.seconds:.0f}s")  # fmt: skip
            states = _verified(ctx, where)
            print(f"verify: {states}")
            victim = instances[0]
            _delete_instance(endpoints.healthcare_url, endpoints.store_name, victim)
            after_delete = _verified(ctx, where)
            print(f"verify after deleting one instance from the store: {after_delete}")
            fixed = generate_dataset(1, 1, 1, seed=7)[0]
            bucket = storage_client(endpoints.storage_host).bucket(INCOMING_BUCKET)
            bucket.blob("archive/bad/0.dcm").upload_from_string(fixed.data)
            redriven = requeue(ctx, "dicom-failed-sub", stage="intake")
            print(f"requeue after fixing archive/bad/0.dcm: {Counter(o.result for o in redriven.chosen)}")
            healed = backfill(ctx, where, progress=False)
            print(f"third backfill (heals the deleted instance): queued {healed.counts['queued']}")
            deadline = time.monotonic() + 600
            while (final := _verified(ctx, where)).get("in store", 0) <= len(instances) and time.monotonic() < deadline:
                time.sleep(5)
            print(f"verify at the end: {final}")
            return 0 if (
                again.counts["queued"] == 0 and again.counts["failed (reported)"] == 0
                and set(states) == {"in store", "reported failed"}
                and after_delete.get("missing") == 1 and healed.counts["queued"] == 1
                and final == {"in store": len(instances) + 1, "reported failed": len(bad) - 1}
            ) else 1  # fmt: skip
        finally:
            stack.stop()


def _verified(ctx: Context, where: GcsPrefix) -> dict[str, int]:
    """``dicomflow verify``'s objects counted by state (the command exits 1 when any is "missing")."""
    return dict(Counter(str(o["state"]) for o in verify(ctx, where, progress=False)))


def _delete_instance(healthcare_url: str, store_name: str, instance: SyntheticInstance) -> None:
    path = f"studies/{instance.study_uid}/series/{instance.series_uid}/instances/{instance.sop_uid}"
    request = urllib.request.Request(f"{healthcare_url}/v1/{store_name}/dicomWeb/{path}", method="DELETE")
    urllib.request.urlopen(request, timeout=30).close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=2000)
    parser.add_argument("--archive", type=int, help="run the archive scenario with this many instances")
    args = parser.parse_args(argv)
    if args.archive:
        return archive(args.archive)
    with tempfile.TemporaryDirectory(prefix="bench-backfill-") as tmp:
        config = StackConfig.on_free_ports(settle_seconds=3600, max_wait_seconds=3600, flush_interval=3600,
                                           data_dir=Path(tmp))  # fmt: skip
        stack = LocalStack(config)
        endpoints = stack.start()
        try:
            bucket = storage_client(endpoints.storage_host).bucket(INCOMING_BUCKET)
            instances = generate_dataset(max(1, args.objects // 40), 4, 10, seed=5)[: args.objects]
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(lambda i: bucket.blob(f"archive/{i.relative_path}").upload_from_string(i.data),
                              instances))  # fmt: skip
            ctx = load(endpoints.data_dir / ENV_FILE, into_process=False)
            where = GcsPrefix(INCOMING_BUCKET, "archive/")
            rows = []
            for label, workers, dry_run in (("one header read at a time (dry run)", 1, True),
                                            ("16 header reads at a time (dry run)", 16, True),
                                            ("16 at a time, publishing", 16, False)):  # fmt: skip
                header_reads.WORKERS = workers
                report = backfill(ctx, where, dry_run=dry_run, progress=False)
                rows.append((label, report.counts["examined"], report.seconds))
        finally:
            stack.stop()
    print(f"\nBackfill — one worker, {args.objects} small instances, {platform.machine()}, "
          f"Python {platform.python_version()}")  # fmt: skip
    base = rows[0][1] / rows[0][2]
    print(f"{'variant':<40}{'objects':>9}{'seconds':>9}{'objects/s':>11}{'vs one at a time':>18}")
    for label, count, seconds in rows:
        rate = count / seconds
        print(f"{label:<40}{count:>9}{seconds:>9.1f}{rate:>11.0f}{rate / base:>17.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

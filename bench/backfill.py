"""Backfill throughput of one worker: objects/s through ``dicomflow backfill`` on the local stack (listing,
header sniffing against fake-gcs-server, one QIDO-RS per series against the emulator, publishing), with header
reads on the pool (16 at a time) beside one at a time, in one run.

    python -m bench.backfill [--objects 2000]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from devstack.client import storage_client
from devstack.processes import free_port
from devstack.recovery import ENV_FILE
from devstack.stack import INCOMING_BUCKET, LocalStack, StackConfig
from devstack.synthetic import generate_dataset
from dicomflow import staging
from dicomflow.cli.backfill import backfill
from dicomflow.cli.context import load
from dicomflow.cli.source import GcsPrefix


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=2000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-backfill-") as tmp:
        ports = [free_port() for _ in range(3)]
        functions_port = free_port()
        while any(p in (functions_port + 1, functions_port + 2) for p in ports):
            functions_port = free_port()
        config = StackConfig(gcs_port=ports[0], pubsub_port=ports[1], healthcare_port=ports[2],
                             functions_port=functions_port, settle_seconds=3600, max_wait_seconds=3600,
                             flush_interval=3600, data_dir=Path(tmp))  # fmt: skip
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
                staging.WORKERS = workers
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

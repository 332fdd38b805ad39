"""What the local stack does on a reused ``--data-dir``: Pub/Sub emulator messages were lost with the last
run, objects, the ledger and the store were not. Two operator CLI commands put back what was lost:
``rewatch`` publishes the watches of every batch without a result again (an import the last run started is
reconciled and exported, and a file it refused, a conflict whose UIDs the store holds, is reported), and
``backfill --unbatched`` queues again every object of a source bucket whose UIDs the store lacks, or whose
current generation no batch took (a conflicting overwrite still waiting on dicom-pending), and skips the rest,
so nothing uploaded before a crash stays unimported or unreported. Files reported bad before are not reported
again (the backfill finds their failure notes in the state bucket)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from dicomflow.cli.backfill import backfill
from dicomflow.cli.context import load
from dicomflow.cli.rewatch import rewatch
from dicomflow.cli.source import GcsPrefix
from dicomflow.logs import fields

log = logging.getLogger(__name__)
ENV_FILE = "dicomflow.env"


def write_env_file(data_dir: Path, env: dict[str, str]) -> Path:
    """The functions' settings and the emulator endpoints, for ``dicomflow --env-file`` (and recovery)."""
    path = data_dir / ENV_FILE
    path.write_text("".join(f"{key}={value}\n" for key, value in sorted(env.items())), encoding="utf-8")
    return path


def recover(env_file: Path) -> int:
    """Watch every batch without a result again, then backfill every source bucket; return how many objects
    were queued again."""
    ctx = load(env_file, into_process=False)
    started = ctx.now()  # the subscriptions exist: intake has the notification of whatever is written from now
    clock = time.monotonic()
    watched = rewatch(ctx, progress=False)
    log.info("recovery: batches without a result watched again",
             extra=fields(batches=len(watched.open), imports=watched.imports, exports=watched.exports,
                          seconds=_since(clock)))  # fmt: skip
    queued = 0
    for bucket in ctx.settings.source_buckets:
        clock = time.monotonic()
        report = backfill(ctx, GcsPrefix(bucket, ""), progress=False, unbatched_before=started)
        queued += report.counts["queued"]
        log.info("recovery: source bucket backfilled",
                 extra=fields(bucket=bucket, seconds=_since(clock), **dict(report.counts)))  # fmt: skip
    return queued


def _since(clock: float) -> float:
    return round(time.monotonic() - clock, 1)

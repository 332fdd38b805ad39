"""Queue the DICOM files a bucket already holds (the pipeline was deployed onto years of files): every object
under the prefix goes through intake's own selection and header sniffing — records on the pending topic, bad
files on the failed topic — except instances the store already holds (by UIDs, one query per series), so a
second run over the same prefix queues nothing.

Resumable: a cursor in the state bucket keeps the last object done; after Ctrl-C or a crash, the same command
goes on from there (a finished run removes its cursor). ``--shard I/N`` splits the names by a stable hash so N
workers backfill one prefix together, each with its own cursor (the Terraform's optional backfill job runs
one task per shard).

    dicomflow backfill gs://archive/2019/ --dry-run
    dicomflow backfill gs://archive/ --since 2024-01-01 --rate 200 --shard 0/4
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from dicomflow.cli.batched import BatchedGenerations
from dicomflow.cli.context import Context
from dicomflow.cli.output import Progress, as_json, table
from dicomflow.cli.scan import SeriesCache, Shard, candidates, scan
from dicomflow.cli.source import GcsPrefix
from dicomflow.ledger.failures import failure_notes
from dicomflow.logs import ObjectNames
from dicomflow.ports import ObjectInfo
from dicomflow.stages.intake import Examined, IntakeOutcome, publish_all

T = TypeVar("T")
NAME = "backfill"
HELP = "queue the DICOM files a bucket already holds (resumable, sharded, rate-limited)"


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prefix", type=GcsPrefix.parse, help="gs://BUCKET/PREFIX")
    parser.add_argument("--dry-run", action="store_true", help="count what would be queued; publish nothing")
    parser.add_argument("--since", type=_date, help="only objects written on or after this date (YYYY-MM-DD)")
    parser.add_argument("--rate", type=float, help="at most this many objects per second")
    parser.add_argument(
        "--unbatched", action="store_true",
        help="also queue files whose UIDs the store holds when no batch took their current generation "
             "(overwrites whose messages were lost; reads every batch manifest since --since)",
    )  # fmt: skip
    parser.add_argument(
        "--shard", type=Shard.parse, default=_env_shard(),
        help="I/N: this worker's share (default: CLOUD_RUN_TASK_INDEX/CLOUD_RUN_TASK_COUNT, else 0/1)",
    )  # fmt: skip


@dataclass
class Backfill:
    counts: Counter[str] = field(default_factory=Counter)
    resumed_after: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"counts": dict(self.counts), "resumed_after": self.resumed_after, "seconds": round(self.seconds, 1)}


def run(ctx: Context, args: argparse.Namespace) -> int:
    report = backfill(ctx, args.prefix, dry_run=args.dry_run, since=args.since, rate=args.rate, shard=args.shard,
                      unbatched_before=ctx.now() if args.unbatched else None)  # fmt: skip
    names = ObjectNames.policy(ctx.settings.log_object_names, ctx.settings.log_hash_key)
    if report.resumed_after is not None:  # the job's output is logged: an object name shows as the logs show it
        report.resumed_after = names.show(report.resumed_after)
    if args.json:
        print(as_json(report.to_dict()))
        return 0
    rows = [[outcome, count] for outcome, count in sorted(report.counts.items())]
    print(table(["outcome", "objects"], rows))
    resumed = f", resumed after {report.resumed_after}" if report.resumed_after else ""
    rate = report.counts["examined"] / max(report.seconds, 1e-9)
    verb = "would queue" if args.dry_run else "queued"
    print(f"\n{verb} {report.counts['queued']} of {report.counts['examined']} DICOM objects in {report.seconds:.0f}s "
          f"({rate:.0f} objects/s{resumed}); {report.counts['in store']} already in the store"
          + (f", {unbatched} stored but never batched at this generation (queued)"
             if (unbatched := report.counts["in store, generation not batched"]) else "")
          + (f", {before} reported failed before (re-drive them with `dicomflow requeue` once fixed)"
             if (before := report.counts["failed (reported before)"]) else ""))  # fmt: skip
    return 0


def backfill(
    ctx: Context, where: GcsPrefix, *, dry_run: bool = False, since: datetime | None = None,
    rate: float | None = None, shard: Shard | None = None, progress: bool = True,
    unbatched_before: datetime | None = None,
) -> Backfill:  # fmt: skip
    """Queue what is under ``where`` and not in the store yet; resumes from this prefix and shard's cursor.
    ``unbatched_before``: also queue a stored instance's file written before that time when no batch of the
    ledger took its current generation (a conflicting overwrite whose record was lost: its import then reports
    or replaces it); one written later is left to intake, which has its notification."""
    shard = shard or Shard()
    report = Backfill()
    cursor = _Cursor(ctx, where, shard)
    report.resumed_after = None if dry_run else cursor.read()
    listing = ctx.store.iterate(where.bucket, where.prefix, start_after=report.resumed_after)
    total = sum(1 for _ in candidates(ctx, listing, shard=shard)) if progress else None
    names = ObjectNames.policy(ctx.settings.log_object_names, ctx.settings.log_hash_key)
    bar = Progress(names.scrub(f"backfill {where} shard {shard}", [where.prefix]), total, quiet=not progress)
    series = SeriesCache(ctx)
    reported = failure_notes(ctx.settings, ctx.store).reported()
    batched = BatchedGenerations(ctx, since) if unbatched_before else None
    started = time.monotonic()
    infos = candidates(ctx, ctx.store.iterate(where.bucket, where.prefix, start_after=report.resumed_after),
                       shard=shard, since=since)  # fmt: skip
    for chunk in scan(ctx, _paced(infos, rate), series):
        to_publish: list[Examined] = []
        for item in chunk:
            report.counts["examined"] += 1
            outcome = item.examined.outcome
            generation = item.info.bucket, item.info.name, item.info.generation
            if item.in_store and (batched is None or _written_after(item.info, unbatched_before)
                                  or batched.holds(*generation)):  # fmt: skip
                report.counts["in store"] += 1
                continue
            if reported.holds(*generation):
                report.counts["failed (reported before)"] += 1  # unchanged since: requeue re-drives it, not we
                continue
            if item.in_store:
                report.counts["in store, generation not batched"] += 1
            if outcome is IntakeOutcome.PENDING:
                report.counts["queued"] += 1
            elif outcome is IntakeOutcome.FAILED:
                report.counts["failed (reported)"] += 1
            else:
                report.counts[outcome.value] += 1
            to_publish.append(item.examined)
        if not dry_run:
            publish_all(to_publish, ctx.settings, ctx.publisher, ctx.store)
            cursor.write(chunk[-1].info.name, report.counts)  # only after the chunk's records were published
        bar.advance(len(chunk), queued=report.counts["queued"])
    bar.finish(queued=report.counts["queued"])
    if not dry_run:
        cursor.remove()
    report.seconds = time.monotonic() - started
    return report


class _Cursor:
    """``{STATE_PREFIX}backfill/<hash of the prefix>-<shard>.json``: the last object name done."""

    def __init__(self, ctx: Context, where: GcsPrefix, shard: Shard) -> None:
        key = hashlib.sha256(str(where).encode()).hexdigest()[:16]
        self._ctx = ctx
        self._name = f"{ctx.settings.state_prefix}backfill/{key}-{shard.index}of{shard.count}.json"
        self._source, self._shard = str(where), str(shard)

    def read(self) -> str | None:
        found = self._ctx.store.read_json(self._ctx.settings.state_bucket, self._name)
        return str(found[0]["after"]) if found else None

    def write(self, after: str, counts: Counter[str]) -> None:
        body = {"source": self._source, "shard": self._shard, "after": after, "counts": dict(counts),
                "updated": datetime.now(UTC).isoformat()}  # fmt: skip
        self._ctx.store.write_json(self._ctx.settings.state_bucket, self._name, body)

    def remove(self) -> None:
        self._ctx.store.delete(self._ctx.settings.state_bucket, self._name)


def _paced(items: Iterable[T], rate: float | None) -> Iterator[T]:
    """``items`` at most ``rate`` per second."""
    if not rate:
        yield from items
        return
    started = time.monotonic()
    for index, item in enumerate(items):
        wait = started + index / rate - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        yield item


def _written_after(info: ObjectInfo, cutoff: datetime | None) -> bool:
    return cutoff is not None and bool(info.updated) and datetime.fromisoformat(info.updated) >= cutoff


def _date(raw: str) -> datetime:
    try:
        return datetime.fromisoformat(raw).replace(tzinfo=UTC)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a date such as 2024-01-31") from None


def _env_shard() -> Shard:
    index, count = os.environ.get("CLOUD_RUN_TASK_INDEX"), os.environ.get("CLOUD_RUN_TASK_COUNT")
    return Shard(int(index), int(count)) if index and count and index.isdigit() and count.isdigit() else Shard()

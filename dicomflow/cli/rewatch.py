"""Publish the watches of every batch that has no result yet, again: for when watch messages were lost (the
operations subscription deleted and created again, watches dead-lettered or past retention, or the local
stack's Pub/Sub emulator restarted without its messages). Each import of such a batch gets its watch, and each
export that was started; the follow-up acts once whatever it receives twice (its ledger claims), so watching a
batch that is still watched costs a delivery and nothing else.

    dicomflow rewatch --dry-run          which batches would be watched again
    dicomflow rewatch --since 2d         only batches created within two days
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from datetime import timedelta

from dicomflow.cli.context import Context
from dicomflow.cli.output import Progress, as_json, duration, table
from dicomflow.ledger.manifest import ResultStatus
from dicomflow.messages.records import WatchKind, WatchMessage
from dicomflow.ports import Message

NAME = "rewatch"
HELP = "publish the watches of batches without a result again (after watch messages were lost)"
_PUBLISH_CHUNK = 500


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", type=duration, help="batches created within this long (default: every batch)")
    parser.add_argument("--dry-run", action="store_true", help="show what would be published; publish nothing")


@dataclass
class Rewatched:
    """What a rewatch found and published."""

    batches: int = 0  # batches read
    open: list[str] = field(default_factory=list)  # batch ids without a published result
    imports: int = 0  # import watches (re)published
    exports: int = 0  # export watches (re)published


def run(ctx: Context, args: argparse.Namespace) -> int:
    found = rewatch(ctx, since=args.since, dry_run=args.dry_run)
    verb = "would publish" if args.dry_run else "published"
    if args.json:
        print(as_json({"batches": found.batches, "open": found.open, "imports": found.imports,
                       "exports": found.exports, "dry_run": args.dry_run}))  # fmt: skip
    else:
        if found.open:
            print(table(["batch without a result"], [[batch] for batch in found.open]))
        print(f"\n{len(found.open)} of {found.batches} batches without a result; {verb} "
              f"{found.imports} import and {found.exports} export watches")  # fmt: skip
    return 0


def rewatch(ctx: Context, *, since: timedelta | None = None, dry_run: bool = False, progress: bool = True) -> Rewatched:
    """Every batch (created within ``since``) without a published result: its import watches, and the watch of
    each export that has an operation, published again on OPERATIONS_TOPIC."""
    ids = ctx.ledger.list_batches(ctx.now() - since if since else None)
    found, pending = Rewatched(batches=len(ids)), []
    meter = Progress("rewatch: batches read", len(ids), quiet=not progress)
    for batch_id in ids:
        meter.advance(open=len(found.open))
        result = ctx.ledger.result(batch_id)
        if result is not None and result.status == ResultStatus.PUBLISHED:
            continue
        manifest = ctx.ledger.read(batch_id)
        if manifest is None:
            continue
        found.open.append(batch_id)
        uri = ctx.ledger.manifest_uri(batch_id)
        for entry in manifest.imports:
            pending.append(_watch(WatchMessage(entry.operation, batch_id, uri, WatchKind.IMPORT)))
            found.imports += 1
        for target in ctx.settings.route_named(manifest.route).export_targets:
            marker = ctx.ledger.export_marker(batch_id, target.name)
            if marker is not None and marker[0].operation:
                pending.append(_watch(WatchMessage(marker[0].operation, batch_id, uri, WatchKind.EXPORT, target.name)))
                found.exports += 1
        if not dry_run and len(pending) >= _PUBLISH_CHUNK:
            ctx.publisher.publish(ctx.settings.operations_topic, pending)
            pending = []
    if not dry_run and pending:
        ctx.publisher.publish(ctx.settings.operations_topic, pending)
    meter.finish(open=len(found.open))
    return found


def _watch(watch: WatchMessage) -> Message:
    attributes = {"batch_id": watch.batch_id, "kind": watch.kind.value, "rewatch": "true"}
    return watch.to_json(), attributes

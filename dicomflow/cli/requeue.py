"""Re-drive failures after their cause is fixed: pull the failed subscription, send each chosen file through
intake again at its current generation (a fresh record with attempt 1 on the pending topic; a file that is
still bad goes back to the failed topic with its reason), and acknowledge each failure only after that
succeeded. A stuck or unfollowable operation (stage ``operation``) is re-driven by publishing its watch
again -- an import's, or an export's while its target still runs on it; an export or de-id whose outcome is
recorded is started again (``--batch --target`` does that for one target of a batch, failed or not). Failures
not chosen are given back untouched.

    dicomflow requeue --dry-run                       what would be re-driven
    dicomflow requeue --stage reconcile --limit 100
    dicomflow requeue --reason 'checksum|permission'
    dicomflow requeue --batch BATCH_ID --target research [--dry-run]
                                                      run one export or de-id target of a batch again
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dicomflow.batching.held import leased
from dicomflow.cli import requeue_target
from dicomflow.cli.context import Context
from dicomflow.cli.output import Progress, as_json, table
from dicomflow.errors import PermanentError
from dicomflow.ledger.manifest import ExportStatus
from dicomflow.messages.events import ObjectEvent
from dicomflow.messages.records import Stage, WatchKind, WatchMessage
from dicomflow.ports import ReceivedMessage
from dicomflow.stages.intake import IntakeOutcome, handle_object_event

NAME = "requeue"
HELP = "re-drive failures from the failed subscription (after fixing their cause)"
_PULL = 500
_LEASE = 60
_SETTLED = ("queued", "still failing: reported again", "watch published", "target started again")


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--subscription", help="subscription on FAILED_TOPIC (default: FAILED_TOPIC-inspect, what "
                                               "the Terraform creates)")  # fmt: skip
    parser.add_argument("--reason", type=re.compile, help="only failures whose reason matches this regex")
    parser.add_argument("--stage", choices=[s.value for s in Stage], help="only failures of this stage")
    parser.add_argument("--limit", type=int, help="re-drive at most this many")
    parser.add_argument("--dry-run", action="store_true", help="show what would be re-driven; acknowledge nothing")
    parser.add_argument("--batch", help="with --target: run that export or de-id target of this batch again "
                                        "(instead of re-driving failures)")  # fmt: skip
    parser.add_argument("--target", help="with --batch: the target's name (EXPORT_TARGETS, or the batch's route)")


@dataclass
class Outcome:
    """One chosen failure and what became of it."""

    bucket: str
    name: str
    stage: str
    reason: str
    result: str = "would be re-driven"

    def row(self) -> list[str]:
        return [self.name, self.stage, self.result, self.reason[:70]]


@dataclass
class Requeue:
    chosen: list[Outcome] = field(default_factory=list)
    left: int = 0  # failures not chosen, given back untouched


def run(ctx: Context, args: argparse.Namespace) -> int:
    if args.batch or args.target:
        return requeue_target.run(ctx, args)
    subscription = args.subscription or f"{ctx.settings.failed_topic}-inspect"
    report = requeue(ctx, subscription, reason=args.reason, stage=args.stage, limit=args.limit, dry_run=args.dry_run)
    if args.json:
        print(as_json({"chosen": [vars(o) for o in report.chosen], "left": report.left}))
    else:
        print(table(["object", "stage", "result", "reason"], [o.row() for o in report.chosen]))
        verb = "would re-drive" if args.dry_run else "re-drove"
        done = sum(1 for o in report.chosen if o.result in (*_SETTLED, "would be re-driven"))
        print(f"\n{verb} {done} of {len(report.chosen)} chosen failure(s); {report.left} other(s) left untouched")
    return 0


def requeue(
    ctx: Context, subscription: str, *, reason: re.Pattern[str] | None = None, stage: str | None = None,
    limit: int | None = None, dry_run: bool = False,
) -> Requeue:  # fmt: skip
    """Pull every waiting failure once (holding them all), re-drive the chosen ones, give the rest back."""
    held: dict[str, ReceivedMessage] = {}
    while True:
        batch = [m for m in ctx.subscriber.pull(subscription, _PULL, wait_seconds=2.0) if m.message_id not in held]
        if not batch:
            break
        held.update((m.message_id, m) for m in batch)
        ctx.subscriber.extend(subscription, [m.ack_id for m in batch], _LEASE)
    report = Requeue()
    acked: set[str] = set()
    progress = Progress("re-driving", total=None)
    with leased(ctx.subscriber, subscription, [m.ack_id for m in held.values()], _LEASE):
        try:
            for message in held.values():
                failure = _body(message)
                wanted = failure is not None and (limit is None or len(report.chosen) < limit) and (
                    stage is None or failure.get("stage") == stage) and (
                    reason is None or reason.search(str(failure.get("reason", ""))) is not None)  # fmt: skip
                if failure is None or not wanted:
                    continue
                outcome = Outcome(str(failure.get("bucket")), str(failure.get("name")), str(failure.get("stage")),
                                  str(failure.get("reason", "")))  # fmt: skip
                report.chosen.append(outcome)
                if dry_run:
                    continue
                outcome.result = _redrive(ctx, failure)
                if outcome.result in _SETTLED:
                    ctx.subscriber.ack(subscription, [message.ack_id])  # only after its re-drive was published
                    acked.add(message.ack_id)
                progress.advance()
        finally:  # everything not re-driven goes back untouched, also after Ctrl-C
            unsettled = [m.ack_id for m in held.values() if m.ack_id not in acked]
            if unsettled:
                ctx.subscriber.nack(subscription, unsettled)
    progress.finish()
    report.left = len(held) - len(report.chosen)
    return report


def _redrive(ctx: Context, failure: dict[str, Any]) -> str:
    if failure.get("stage") == Stage.OPERATION and failure.get("operation") and failure.get("batch_id"):
        return _redrive_operation(ctx, str(failure["batch_id"]), str(failure["operation"]), failure.get("target"))
    info = ctx.store.stat(str(failure.get("bucket")), str(failure.get("name")))
    if info is None:
        return "object no longer exists: left on the failed topic"
    event = ObjectEvent(info.bucket, info.name, info.generation, info.size, info.crc32c,
                        datetime.now(UTC).isoformat())  # fmt: skip
    outcome = handle_object_event(event, ctx.settings, store=ctx.store, publisher=ctx.publisher)
    if outcome is IntakeOutcome.PENDING:
        return "queued"
    if outcome is IntakeOutcome.FAILED:
        return "still failing: reported again"
    return f"not queued ({outcome.value}): left on the failed topic"


def _redrive_operation(ctx: Context, batch_id: str, operation: str, target: Any) -> str:
    """An import's watch published again; an export's (``target``) while its marker still runs on the
    operation, else the target started again under its claim (its outcome was recorded, e.g. stuck)."""
    if not target:
        watch = WatchMessage(operation, batch_id, ctx.ledger.manifest_uri(batch_id), WatchKind.IMPORT)
        ctx.publisher.publish(ctx.settings.operations_topic, [(watch.to_json(), {"batch_id": batch_id})])
        return "watch published"
    found = ctx.ledger.export_marker(batch_id, str(target))
    if found is not None and found[0].status is ExportStatus.RUNNING and found[0].operation == operation:
        watch = WatchMessage(operation, batch_id, ctx.ledger.manifest_uri(batch_id), WatchKind.EXPORT, str(target))
        attributes = {"batch_id": batch_id, "kind": WatchKind.EXPORT.value}
        ctx.publisher.publish(ctx.settings.operations_topic, [(watch.to_json(), attributes)])
        return "watch published"
    try:
        rerun = requeue_target.rerun(ctx, batch_id, str(target))
    except PermanentError as exc:
        return f"not re-run ({exc}): left on the failed topic"
    return "target started again" if rerun.state == "started" else f"target {rerun.state}: left on the failed topic"


def _body(message: ReceivedMessage) -> dict[str, Any] | None:
    try:
        body = json.loads(message.data)
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None

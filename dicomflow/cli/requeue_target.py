"""``dicomflow requeue --batch BATCH_ID --target NAME``: run one export target of one batch again -- typically
a de-identification that failed (its store was missing, a permission denied) once the cause is fixed, or a
target added after the batch finished. The target's marker is claimed first (``stages.follow.rerun``), so it is
safe against a running follow-up: a target that is running or being started is left alone, with what to do."""

from __future__ import annotations

import argparse

from dicomflow.cli.context import Context
from dicomflow.cli.output import Progress, as_json, table
from dicomflow.errors import PermanentError
from dicomflow.ledger.manifest import Manifest
from dicomflow.stages.follow.context import FollowContext
from dicomflow.stages.follow.rerun import Rerun, rerun_target


def run(ctx: Context, args: argparse.Namespace) -> int:
    if not (args.batch and args.target):
        raise PermanentError("--batch and --target go together: dicomflow requeue --batch BATCH_ID --target NAME")
    progress = Progress(f"requeue: target {args.target} of batch {args.batch}", total=1)
    manifest = _manifest(ctx, args.batch)
    rerun = rerun_target(_follow_context(ctx, manifest), manifest, args.target, dry_run=args.dry_run)
    progress.advance()
    progress.finish()
    row = {"batch_id": manifest.batch_id, "target": args.target, "result": rerun.state,
           "operation": rerun.operation, "detail": rerun.detail, "dry_run": args.dry_run}  # fmt: skip
    if args.json:
        print(as_json(row))
        return 0 if rerun.state != "failed" else 2
    cells = [manifest.batch_id, args.target, rerun.state, rerun.operation or "-", rerun.detail[:70]]
    print(table(["batch", "target", "result", "operation", "detail"], [cells]))
    if rerun.state == "started":
        print(f"\nstarted; the follow-up records its outcome: dicomflow status --batch {manifest.batch_id}")
    elif rerun.state == "would start":
        print("\ndry run: nothing started (run it without --dry-run)")
    elif rerun.state == "failed":
        print(f"\nrefused by the API: fix the cause ({rerun.detail[:200]}), then run it again")
    return 0 if rerun.state != "failed" else 2


def rerun(ctx: Context, batch_id: str, target: str) -> Rerun:
    """Start ``target`` of the batch again (a requeue of its failure on the failed topic)."""
    manifest = _manifest(ctx, batch_id)
    return rerun_target(_follow_context(ctx, manifest), manifest, target)


def _manifest(ctx: Context, batch_id: str) -> Manifest:
    manifest = ctx.ledger.read(batch_id)
    if manifest is None:
        raise PermanentError(f"batch {batch_id} is not in the ledger gs://{ctx.settings.state_bucket}/"
                             f"{ctx.settings.state_prefix}: see `dicomflow status` for the batch ids")  # fmt: skip
    return manifest


def _follow_context(ctx: Context, manifest: Manifest) -> FollowContext:
    """The follow-up's view of the batch: the ports of its route's store."""
    return FollowContext(ctx.settings, ctx.store, ctx.stores(manifest.store), ctx.publisher, ctx.now, ctx.ledger)

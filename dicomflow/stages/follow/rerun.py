"""One export target of one batch started again by the operator (``dicomflow requeue --batch ID --target
NAME``): a de-identification that failed (its store was missing, a permission denied) once the cause is fixed,
an export reported stuck, or a target added after the batch finished. Safe beside a running follow-up: the
target's marker is claimed first, with the conditional writes the follow-up uses, so a target that runs or is
being started is left alone, and one claimant starts it. Its watch then goes to the follow-up like any other;
a batch result already published is not published again (the new outcome is in the target's marker:
``dicomflow status --batch``)."""

from __future__ import annotations

from dataclasses import dataclass

from dicomflow.config.exports import ExportTarget
from dicomflow.errors import PermanentError
from dicomflow.ledger.manifest import Claim, ExportMarker, ExportOutcome, ExportStatus, Manifest
from dicomflow.stages.follow.context import FollowContext, FollowResult, FollowState
from dicomflow.stages.follow.exports import ExportStep


@dataclass(frozen=True)
class Rerun:
    """What became of it: ``started`` (with its operation), ``would start`` (dry run), ``skipped``, ``failed``."""

    state: str
    operation: str | None = None
    detail: str = ""


def rerun_target(ctx: FollowContext, manifest: Manifest, target_name: str, *, dry_run: bool = False) -> Rerun:
    """Claim the target's marker of the batch and start the target again on the batch's instances in the
    store; PermanentError saying what to do when it may not be started now."""
    target = _target(ctx, manifest, target_name)
    found = ctx.ledger.export_marker(manifest.batch_id, target.name)
    if found is not None and found[0].status is ExportStatus.RUNNING:
        raise PermanentError(
            f"target {target.name!r} of batch {manifest.batch_id} is running ({found[0].operation}): wait until"
            f" it ends (dicomflow status --batch {manifest.batch_id}), then run it again"
        )
    if dry_run:
        return Rerun("would start", detail="again" if found else "for the first time")
    claim = _claim(ctx, manifest, target, found)
    if claim is None:
        raise PermanentError(
            f"target {target.name!r} of batch {manifest.batch_id} is being started by a follow-up right now: see "
            f"dicomflow status --batch {manifest.batch_id}, and try again in 5 minutes if it stays 'starting'"
        )
    step = ExportStep(ctx)
    operation = step.launch(manifest, target, step.write_filter(manifest), claim, FollowResult(FollowState.IMPORTED))
    if operation is not None:
        return Rerun("started", operation)
    marker = ctx.ledger.export_marker(manifest.batch_id, target.name)
    done = marker[0] if marker else None
    state = "skipped" if done is not None and done.outcome is ExportOutcome.SKIPPED else "failed"
    return Rerun(state, detail=(done.reason or "") if done else "")


def _target(ctx: FollowContext, manifest: Manifest, name: str) -> ExportTarget:
    targets = ctx.settings.route_named(manifest.route).export_targets
    found = next((t for t in targets if t.name == name), None)
    if found is None:
        names = ", ".join(t.name for t in targets) or "none"
        raise PermanentError(
            f"{name!r} is not an export target of route {manifest.route!r} (its targets: {names}): add it to"
            " EXPORT_TARGETS (or the route's export_targets) first"
        )
    return found


def _claim(
    ctx: FollowContext, manifest: Manifest, target: ExportTarget, found: tuple[ExportMarker, int] | None
) -> Claim | None:
    """A fresh claim on the target's marker: created, taken over from an expired or released 'starting' one,
    or replacing the 'done' one at the generation read (None when a follow-up holds it or moved it first)."""
    if found is None or found[0].status is ExportStatus.STARTING:
        return ctx.ledger.claim_export(manifest.batch_id, target.name)
    starting = ExportMarker(target.name, ExportStatus.STARTING, claimed=ctx.now().isoformat())
    return ctx.ledger.reclaim_export(ctx.ledger.export_claim(manifest.batch_id, target.name, found[1]), starting)

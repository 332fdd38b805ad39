"""The follow-up's export step: once every import of the batch is reconciled, write the filter file of its
instances in the store, claim and start each export target of its route once and watch it; when an export's
watch comes back, record its outcome, or start it again (same filter file) when it was interrupted. A de-id
target is one more target here: what differs (the call, its failed instances) is in ``deidentify``."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from dicomflow.config.exports import ExportTarget
from dicomflow.errors import PermanentError, RetryableError
from dicomflow.ledger.manifest import Claim, ExportMarker, ExportOutcome, ExportStatus, Manifest
from dicomflow.logs import fields
from dicomflow.messages import lro
from dicomflow.messages.records import WatchKind, WatchMessage
from dicomflow.reconcile.import_check import present_instances
from dicomflow.reconcile.logged_reasons import LoggedReasons
from dicomflow.stages.follow.context import FollowContext, FollowResult, FollowState
from dicomflow.stages.follow.deidentify import failed_instances, start_operation

log = logging.getLogger(__package__)  # the follow-up's one logger: its lines keep the name dicomflow.stages.follow
EXPORT_ATTEMPTS = 3
_INTERRUPTED_CODES = (4, 10, 14)  # google.rpc.Code DEADLINE_EXCEEDED, ABORTED, UNAVAILABLE


class ExportStep:
    def __init__(self, context: FollowContext, reasons: LoggedReasons | None = None) -> None:
        self._ctx = context
        self._reasons = reasons or LoggedReasons(None, 0)

    def start(self, manifest: Manifest, result: FollowResult) -> None:
        """Every import reconciled: claim and start each export target of the batch's route once. RetryableError
        (the watch comes back) while another delivery holds a target's claim, so no target is left 'starting'
        by a delivery that died: its claim expires and the redelivery takes it over."""
        ctx = self._ctx
        targets = ctx.settings.route_named(manifest.route).export_targets
        result.state = FollowState.IMPORTED
        filter_uri: str | None = None
        held: list[str] = []
        for target in targets:
            claim = ctx.ledger.claim_export(manifest.batch_id, target.name)
            if claim is None:
                found = ctx.ledger.export_marker(manifest.batch_id, target.name)
                if found is not None and found[0].status is ExportStatus.STARTING:
                    held.append(target.name)
                continue
            if filter_uri is None:
                filter_uri = self.write_filter(manifest)
            self.launch(manifest, target, filter_uri, claim, result)
        if result.exports_started:
            result.state = FollowState.EXPORTING
        if held:
            raise RetryableError(f"export target(s) {', '.join(held)} of batch {manifest.batch_id} being started "
                                 "by another delivery")  # fmt: skip

    def launch(self, manifest: Manifest, target: ExportTarget, filter_uri: str, claim: Claim,
               result: FollowResult) -> str | None:  # fmt: skip
        """Under our claim: start the target on the batch's filter file and watch it; its operation, or None
        when nothing was started (no instance in the store: SKIPPED; refused: FAILED with the API's reason). A
        retryable error releases the claim and propagates: the redelivered watch starts it."""
        ctx = self._ctx
        claimed = ExportMarker(target.name, ExportStatus.STARTING)
        if not filter_uri:
            reason = "no instance of the batch is in the store"
            ctx.ledger.complete_export(claim, claimed.done(ExportOutcome.SKIPPED, ctx.now().isoformat(), reason))
            return None
        try:
            operation = start_operation(ctx.healthcare, target, filter_uri)
        except PermanentError as exc:
            ctx.ledger.complete_export(
                claim, claimed.done(ExportOutcome.FAILED, ctx.now().isoformat(), f"refused: {exc}")
            )
            return None
        except RetryableError:
            ctx.ledger.release_export(claim, target.name)
            raise
        running = ExportMarker(target.name, ExportStatus.RUNNING, operation=operation, started=ctx.now().isoformat())
        ctx.ledger.complete_export(claim, running)
        self._watch(manifest, target.name, operation)
        result.exports_started.append(target.name)
        log.info("export started", extra=fields(batch_id=manifest.batch_id, operation=operation, target=target.name))
        return operation

    def write_filter(self, manifest: Manifest) -> str:
        """The filter file of the batch's instances in the store; '' when none is."""
        present = sorted(present_instances(self._ctx.healthcare, (f.record for f in manifest.files)))
        if not present:
            return ""
        return self._ctx.ledger.write_filter(
            manifest.batch_id, (f"/studies/{st}/series/{se}/instances/{sop}" for st, se, sop in present)
        )

    def _watch(self, manifest: Manifest, target: str, operation: str) -> None:
        ctx = self._ctx
        watch = WatchMessage(operation, manifest.batch_id, ctx.ledger.manifest_uri(manifest.batch_id),
                             WatchKind.EXPORT, target)  # fmt: skip
        ctx.publisher.publish(
            ctx.settings.operations_topic,
            [(watch.to_json(), {"batch_id": manifest.batch_id, "kind": WatchKind.EXPORT.value})],
        )

    def done(self, manifest: Manifest, watch: WatchMessage, operation: dict[str, Any]) -> FollowResult:
        """An export's watch back: EXPORTED once its outcome is recorded, EXPORTING when it was started again."""
        assert watch.target is not None
        ctx = self._ctx
        found = ctx.ledger.export_marker(manifest.batch_id, watch.target)
        if found is None or found[0].operation != watch.operation or found[0].status is ExportStatus.DONE:
            return FollowResult(FollowState.EXPORTED)  # recorded by an earlier delivery, or started anew since
        marker, generation = found
        claim = ctx.ledger.export_claim(manifest.batch_id, watch.target, generation)
        if marker.status is ExportStatus.STARTING:  # a restart of this operation that did not get through
            if not ctx.ledger.claim_expired(marker.claimed):
                raise RetryableError(f"export target {watch.target} of batch {manifest.batch_id} is being "
                                     "started again by another delivery")  # fmt: skip
            marker = replace(marker, status=ExportStatus.RUNNING)
        if _interrupted(operation) and marker.attempts < EXPORT_ATTEMPTS:
            state = self._restart(manifest, marker, claim)
            if state is not None:
                return FollowResult(state, exports_started=[watch.target] if state is FollowState.EXPORTING else [])
        outcome = ExportOutcome.SUCCEEDED if "response" in operation else (
            ExportOutcome.STUCK if operation.get("stuck") else ExportOutcome.FAILED)  # fmt: skip
        reason = None if outcome is ExportOutcome.SUCCEEDED else lro.reason(operation)
        failed = failed_instances(self._reasons, self._target(manifest, marker.target), watch.operation, operation)
        done = marker.done(outcome, ctx.now().isoformat(), reason, counter=lro.counter(operation),
                           failed_instances=failed)  # fmt: skip
        ctx.ledger.complete_export(claim, done)
        return FollowResult(FollowState.EXPORTED)

    def _restart(self, manifest: Manifest, marker: ExportMarker, claim: Claim) -> FollowState | None:
        """Start an export again whose operation was interrupted (ABORTED, UNAVAILABLE), same filter file.
        EXPORTING: a watch carries on; EXPORTED: refused now, its outcome recorded; None: its target is gone
        from the settings. A retryable error puts the running marker back and propagates (the watch returns)."""
        ctx = self._ctx
        target = self._target(manifest, marker.target)
        if target is None:
            return None
        restarting = replace(marker, status=ExportStatus.STARTING, claimed=ctx.now().isoformat())
        ours = ctx.ledger.reclaim_export(claim, restarting)  # claim first: one delivery starts it again
        if ours is None:
            return FollowState.EXPORTING  # another delivery moved the marker on first; its watch carries on
        try:
            operation = start_operation(ctx.healthcare, target, ctx.ledger.filter_uri(manifest.batch_id))
        except PermanentError as exc:  # refused now (its store deleted meanwhile): an outcome, never a hang
            ctx.ledger.complete_export(ours, marker.done(ExportOutcome.FAILED, ctx.now().isoformat(),
                                                         f"refused: {exc}"))  # fmt: skip
            return FollowState.EXPORTED
        except RetryableError:
            ctx.ledger.complete_export(ours, marker)  # running again on the interrupted operation: retried
            raise
        restarted = replace(marker, operation=operation, started=ctx.now().isoformat(), attempts=marker.attempts + 1)
        if ctx.ledger.complete_export(ours, restarted):
            self._watch(manifest, target.name, operation)
            log.warning("export interrupted; started again",
                        extra=fields(batch_id=manifest.batch_id, operation=operation, target=target.name,
                                     attempt=restarted.attempts))  # fmt: skip
        return FollowState.EXPORTING

    def _target(self, manifest: Manifest, name: str) -> ExportTarget | None:
        """The route's target of that name (None once removed from the settings)."""
        return next((t for t in self._ctx.settings.route_named(manifest.route).export_targets if t.name == name), None)


def _interrupted(operation: dict[str, Any]) -> bool:
    """The operation ended because it was interrupted, not because of what it exported: worth starting again."""
    error = operation.get("error")
    return isinstance(error, dict) and error.get("code") in _INTERRUPTED_CODES

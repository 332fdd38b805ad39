"""The follow-up's export step: once every import of the batch is reconciled, write the filter file of its
instances in the store, claim and start each export target of its route once and watch it; when an export's
watch comes back, record its outcome, or start it again (same filter file) when it was interrupted. A de-id
target is one more target here: what differs (the call, its failed instances) is in ``deidentify``."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from dicomflow.config.exports import ExportTarget
from dicomflow.errors import PermanentError
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
        """Every import reconciled: claim and start each export target of the batch's route once."""
        ctx = self._ctx
        targets = ctx.settings.route_named(manifest.route).export_targets
        result.state = FollowState.IMPORTED
        filter_uri: str | None = None
        for target in targets:
            claim = ctx.ledger.claim_export(manifest.batch_id, target.name)
            if claim is None:
                continue
            if filter_uri is None:
                filter_uri = self._write_filter(manifest)
            claimed = ExportMarker(target.name, ExportStatus.STARTING)
            if not filter_uri:
                done = claimed.done(
                    ExportOutcome.SKIPPED, ctx.now().isoformat(), "no instance of the batch is in the store"
                )
                ctx.ledger.complete_export(claim, done)
                continue
            self._start(manifest, target, filter_uri, claim, claimed, result)
        if result.exports_started:
            result.state = FollowState.EXPORTING

    def _start(
        self, manifest: Manifest, target: ExportTarget, filter_uri: str, claim: Claim, claimed: ExportMarker,
        result: FollowResult,
    ) -> None:  # fmt: skip
        ctx = self._ctx
        try:
            operation = start_operation(ctx.healthcare, target, filter_uri)
        except PermanentError as exc:
            ctx.ledger.complete_export(
                claim, claimed.done(ExportOutcome.FAILED, ctx.now().isoformat(), f"refused: {exc}")
            )
            return
        running = ExportMarker(target.name, ExportStatus.RUNNING, operation=operation, started=ctx.now().isoformat())
        ctx.ledger.complete_export(claim, running)
        watch = WatchMessage(operation, manifest.batch_id, ctx.ledger.manifest_uri(manifest.batch_id),
                             WatchKind.EXPORT, target.name)  # fmt: skip
        ctx.publisher.publish(
            ctx.settings.operations_topic,
            [(watch.to_json(), {"batch_id": manifest.batch_id, "kind": WatchKind.EXPORT.value})],
        )
        result.exports_started.append(target.name)
        log.info("export started", extra=fields(batch_id=manifest.batch_id, operation=operation, target=target.name))

    def _write_filter(self, manifest: Manifest) -> str:
        """The filter file of the batch's instances in the store; '' when none is."""
        present = sorted(present_instances(self._ctx.healthcare, (f.record for f in manifest.files)))
        if not present:
            return ""
        return self._ctx.ledger.write_filter(
            manifest.batch_id, (f"/studies/{st}/series/{se}/instances/{sop}" for st, se, sop in present)
        )

    def done(self, manifest: Manifest, watch: WatchMessage, operation: dict[str, Any]) -> FollowResult:
        """An export's watch back: EXPORTED once its outcome is recorded, EXPORTING when it was started again."""
        assert watch.target is not None
        ctx = self._ctx
        found = ctx.ledger.export_marker(manifest.batch_id, watch.target)
        if found is not None:
            marker, generation = found
            if marker.status is ExportStatus.RUNNING and marker.operation == watch.operation:
                if _interrupted(operation) and marker.attempts < EXPORT_ATTEMPTS:
                    claim = ctx.ledger.export_claim(manifest.batch_id, watch.target, generation)
                    if self._restart(manifest, marker, claim):
                        return FollowResult(FollowState.EXPORTING, exports_started=[watch.target])
                outcome = ExportOutcome.SUCCEEDED if "response" in operation else (
                    ExportOutcome.STUCK if operation.get("stuck") else ExportOutcome.FAILED)  # fmt: skip
                reason = None if outcome is ExportOutcome.SUCCEEDED else lro.reason(operation)
                failed = failed_instances(self._reasons, self._target(manifest, marker.target), watch.operation,
                                          operation)  # fmt: skip
                done = marker.done(outcome, ctx.now().isoformat(), reason, counter=lro.counter(operation),
                                   failed_instances=failed)  # fmt: skip
                ctx.ledger.complete_export(ctx.ledger.export_claim(manifest.batch_id, watch.target, generation), done)
        return FollowResult(FollowState.EXPORTED)

    def _restart(self, manifest: Manifest, marker: ExportMarker, claim: Claim) -> bool:
        """Start an export again whose operation was interrupted (ABORTED, UNAVAILABLE): same filter file."""
        ctx = self._ctx
        target = self._target(manifest, marker.target)
        if target is None:
            return False
        restarting = replace(marker, status=ExportStatus.STARTING, claimed=ctx.now().isoformat())
        ours = ctx.ledger.reclaim_export(claim, restarting)  # claim first: one delivery starts it again
        if ours is None:
            return True  # another delivery moved the marker on first; its watch carries on
        operation = start_operation(ctx.healthcare, target, ctx.ledger.filter_uri(manifest.batch_id))
        restarted = replace(marker, operation=operation, started=ctx.now().isoformat(), attempts=marker.attempts + 1)
        if not ctx.ledger.complete_export(ours, restarted):
            return True
        watch = WatchMessage(operation, manifest.batch_id, ctx.ledger.manifest_uri(manifest.batch_id),
                             WatchKind.EXPORT, target.name)  # fmt: skip
        ctx.publisher.publish(
            ctx.settings.operations_topic,
            [(watch.to_json(), {"batch_id": manifest.batch_id, "kind": WatchKind.EXPORT.value})],
        )
        log.warning("export interrupted; started again",
                    extra=fields(batch_id=manifest.batch_id, operation=operation, target=target.name,
                                 attempt=restarted.attempts))  # fmt: skip
        return True

    def _target(self, manifest: Manifest, name: str) -> ExportTarget | None:
        return next((t for t in self._ctx.settings.route_named(manifest.route).export_targets if t.name == name), None)


def _interrupted(operation: dict[str, Any]) -> bool:
    """The operation ended because it was interrupted, not because of what it exported: worth starting again."""
    error = operation.get("error")
    return isinstance(error, dict) and error.get("code") in _INTERRUPTED_CODES

"""The follow-up's import step: a finished import reconciled under its claim in the ledger, once -- its files
checked against the store (reasons of reported files from Cloud Logging), its conflicts settled (reported, or
the stored instance replaced), files re-driven or reported, its staged copies deleted, its marker recorded."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from dicomflow.batching.staging import delete_copies
from dicomflow.errors import ObjectGoneError, OperationPendingError
from dicomflow.ledger.failures import report_failed
from dicomflow.ledger.manifest import Claim, FailureNote, ImportMarker, Manifest
from dicomflow.logs import fields
from dicomflow.messages import lro
from dicomflow.messages.records import PendingRecord, WatchMessage
from dicomflow.reconcile.conflicts import REPLACE, settle_conflicts
from dicomflow.reconcile.import_check import Sources, reconcile_import
from dicomflow.reconcile.logged_reasons import LoggedReasons
from dicomflow.stages.follow.context import FollowContext, FollowResult, FollowState

log = logging.getLogger(__package__)  # the follow-up's one logger: its lines keep the name dicomflow.stages.follow


class ImportStep:
    def __init__(self, context: FollowContext, reasons: LoggedReasons) -> None:
        self._ctx = context
        self._reasons = reasons

    def done(self, manifest: Manifest, watch: WatchMessage, operation: dict[str, Any]) -> FollowResult:
        """The import reconciled, by this delivery or an earlier one; OperationPendingError while another has it."""
        ledger = self._ctx.ledger
        result = FollowResult(FollowState.RECONCILED)
        claim = None
        if ledger.import_marker(manifest.batch_id, watch.operation) is None:
            claim = ledger.claim_import(manifest.batch_id, watch.operation)  # claim first, then act
            if claim is None and ledger.import_marker(manifest.batch_id, watch.operation) is None:
                raise OperationPendingError(f"{watch.operation} is being reconciled by another delivery")
        if claim is not None:
            try:
                self._reconcile(manifest, watch, operation, result, claim)
            except BaseException:
                ledger.release_import(claim)  # the redelivered watch takes over at once
                raise
        return result

    def _reconcile(
        self, manifest: Manifest, watch: WatchMessage, operation: dict[str, Any], result: FollowResult, claim: Claim
    ) -> None:
        """Under our claim: reconcile, settle conflicts, re-drive, report, delete copies, record -- once."""
        ctx = self._ctx
        sources = Sources(self._exists, lambda r: ctx.store.read(r.bucket, r.name, r.generation))
        outcome = reconcile_import(
            manifest, watch.operation, operation, ctx.healthcare, ctx.settings.max_attempts, sources,
            logged=lambda: self._reasons.of(watch.operation, lro.failures(operation)),
        )  # fmt: skip
        settled = settle_conflicts(
            outcome.conflicts,
            ctx.settings.conflict_policy,
            ctx.healthcare,
            manifest.batch_id,
            lambda record: ctx.ledger.note_replacing(manifest.batch_id, record),
        )
        if ctx.settings.conflict_policy == REPLACE:  # a crash after a delete: the file is missing now
            outcome.redrive = [replace(r, replaced=True) if ctx.ledger.was_replacing(manifest.batch_id, r) else r
                               for r in outcome.redrive]  # fmt: skip
        redrive, failed = [*outcome.redrive, *settled.redrive], [*outcome.failed, *settled.failed]
        if redrive:
            ctx.publisher.publish(ctx.settings.pending_topic, [
                (r.to_json(), {"bucket": r.bucket, "redrive": "true"}) for r in redrive
            ])  # fmt: skip
        report_failed(failed, ctx.settings, ctx.publisher, ctx.store)
        result.redriven, result.failed = len(redrive), len(failed)
        marker = ImportMarker(
            watch.operation, ctx.now().isoformat(), lro.counter(operation), operation.get("error"),
            bool(operation.get("stuck")), result.redriven, tuple(FailureNote.of(f) for f in failed),
        )  # fmt: skip
        entry = manifest.import_of(watch.operation)
        copies = [f.staged for f in manifest.files_via(entry.uri) if f.staged] if entry else []
        delete_copies(ctx.store, copies)  # reconciled: the store has what it needed from them
        ctx.ledger.record_import(manifest, marker, claim)
        log.info("import reconciled", extra=fields(
            batch_id=manifest.batch_id, operation=watch.operation, present=outcome.present,
            redriven=result.redriven, failed=result.failed, conflicts=len(outcome.conflicts),
            replaced=len(settled.redrive),
        ))  # fmt: skip

    def _exists(self, record: PendingRecord) -> bool:
        """Whether the record's generation is still there (a file missing after its import may be deleted)."""
        try:
            self._ctx.store.read_range(record.bucket, record.name, record.generation, 0, 1)
        except ObjectGoneError:
            return False
        return True

"""Follow-up of long-running operations: one watch message in, the batch moved one step on.

    not done             -> polled (operations.get every FOLLOW_INTERVAL_SECONDS) for up to
                            FOLLOW_POLL_SECONDS, then OperationPendingError (Pub/Sub redelivers with backoff);
                            reported stuck once older than OPERATION_MAX_AGE_SECONDS
    import done          -> reconcile its files (``reconcile``; reasons of reported files from Cloud Logging,
                            ``logged_reasons``), settle its conflicts (``conflicts``: report, or
                            replace the stored instance), delete its staged copies, record it once
    every import done    -> write the filter file, claim and start each export target once, watch it
    export done          -> record its outcome
    everything done      -> publish the batch result once (``results``)

Each effect is claimed in the ledger first, so redelivered or concurrent watches never repeat it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from dicomflow.config.settings import Settings
from dicomflow.errors import OperationPendingError, PermanentError
from dicomflow.ledger.failures import report_failed
from dicomflow.ledger.manifest import Manifest
from dicomflow.ledger.store import BatchLedger
from dicomflow.logs import fields
from dicomflow.messages import lro
from dicomflow.messages.records import FailedFile, Stage, WatchKind, WatchMessage
from dicomflow.ports import ErrorLog, HealthcareApi, ObjectStore, Publisher
from dicomflow.reconcile.logged_reasons import LoggedReasons
from dicomflow.stages.follow.context import FollowContext, FollowResult, FollowState
from dicomflow.stages.follow.exports import EXPORT_ATTEMPTS, ExportStep
from dicomflow.stages.follow.imports import ImportStep
from dicomflow.stages.follow.result import FinishStep

__all__ = ["EXPORT_ATTEMPTS", "FollowResult", "FollowState", "Follower"]

log = logging.getLogger(__name__)


class Follower:
    def __init__(
        self,
        settings: Settings,
        *,
        store: ObjectStore,
        healthcare: HealthcareApi,
        publisher: Publisher,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        stores: Callable[[str], HealthcareApi] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        error_log: ErrorLog | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.healthcare = healthcare
        self._stores = stores or (lambda _store: healthcare)
        self.publisher = publisher
        self.now = now
        self._clock, self._sleep = clock, sleep
        self._reasons = LoggedReasons(error_log, settings.failure_log_wait_seconds, clock, sleep)
        self.ledger = BatchLedger(store, settings.state_bucket, settings.state_prefix, now=now)

    def follow(self, watch: WatchMessage) -> FollowResult:
        """Raise OperationPendingError while the operation runs (redelivery), return once its effects are done."""
        manifest = self.ledger.open(watch.manifest_uri)
        self.healthcare = self._stores(manifest.store)  # the store of this batch's route
        where = fields(batch_id=manifest.batch_id, operation=watch.operation, kind=watch.kind)
        operation, polls = self._await(manifest, watch)
        if watch.kind is WatchKind.IMPORT:
            result = ImportStep(self._context(), self._reasons).done(manifest, watch, operation)
            if self._context().import_markers(manifest) is not None:  # every import reconciled
                ExportStep(self._context()).start(manifest, result)
                FinishStep(self._context()).finish(manifest, result)
        elif watch.target:
            result = ExportStep(self._context()).done(manifest, watch, operation)
            if result.state is FollowState.EXPORTED:  # its outcome recorded, not started again
                FinishStep(self._context()).finish(manifest, result)
        else:
            raise PermanentError("export watch message names no target")
        result.polls = polls
        log.info("operation followed up", extra=fields(**where["fields"], state=result.state, polls=polls))
        return result

    def _context(self) -> FollowContext:
        return FollowContext(self.settings, self.store, self.healthcare, self.publisher, self.now, self.ledger)

    def _await(self, manifest: Manifest, watch: WatchMessage) -> tuple[dict[str, Any], int]:
        """The operation once it is done (or reported stuck) and how many operations.get calls that took: polled
        every FOLLOW_INTERVAL_SECONDS for up to FOLLOW_POLL_SECONDS of this delivery, so its end is noticed
        within an interval, not at Pub/Sub's next redelivery; OperationPendingError when it still runs then."""
        deadline = self._clock() + self.settings.follow_poll_seconds
        polls = 0
        while True:
            operation = self.healthcare.get_operation(watch.operation)
            polls += 1
            if operation.get("done"):
                return operation, polls
            age = lro.age_seconds(operation, self.now())
            if age >= self.settings.operation_max_age_seconds:
                self._report_stuck(manifest, watch, age)
                return {**operation, "stuck": True}, polls
            wait = min(self.settings.follow_interval_seconds, deadline - self._clock())
            if wait <= 0:
                where = fields(batch_id=manifest.batch_id, operation=watch.operation, kind=watch.kind, polls=polls)
                log.info("operation still running", extra=where)
                raise OperationPendingError(f"{watch.operation} is not done yet")
            self._sleep(wait)

    def _report_stuck(self, manifest: Manifest, watch: WatchMessage, age: float) -> None:
        if not self.ledger.claim_once(manifest.batch_id, f"stuck-{watch.operation.rpartition('/')[2]}"):
            return  # another delivery of this watch reported it
        reason = f"operation {watch.operation} still not done after {age:.0f}s; reported stuck, not waited for"
        stuck = FailedFile(self.ledger.bucket, watch.manifest_uri, None, reason, Stage.OPERATION,
                           batch_id=manifest.batch_id, operation=watch.operation)  # fmt: skip
        report_failed([stuck], self.settings, self.publisher, self.store)
        log.error("operation stuck", extra=fields(batch_id=manifest.batch_id, operation=watch.operation))

"""Follow-up of long-running operations: one watch message in, the batch moved one step on.

    not done             -> polled (operations.get every FOLLOW_INTERVAL_SECONDS) for up to
                            FOLLOW_POLL_SECONDS, then OperationPendingError (Pub/Sub redelivers with backoff);
                            reported stuck once older than OPERATION_MAX_AGE_SECONDS
    import done          -> reconcile its files (``reconcile``; reasons of reported files from Cloud Logging,
                            ``logged_reasons``), settle its conflicts (``conflicts``: report, or
                            replace the stored instance), delete its staged copies, record it once
    every import done    -> write the filter file, claim and start each export target once (a de-id target:
                            dicomStores.deidentify into its research store), watch it
    export done          -> record its outcome (a de-id target: with its failed instances and their reasons)
    everything done      -> publish the batch result once (``results``)

Each effect is claimed in the ledger first, so redelivered or concurrent watches never repeat it.

``Follower`` here runs the steps in that order; each step is a module of this package: ``pending`` (not done,
stuck), ``imports`` (import done), ``exports`` (every import done, export done), ``result`` (everything done).
They share ``context.FollowContext`` (settings, ports, ledger) and fill in one ``FollowResult``; they all log
as ``dicomflow.stages.follow``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from dicomflow.config.settings import Settings
from dicomflow.errors import PermanentError
from dicomflow.ledger.store import BatchLedger
from dicomflow.logs import fields
from dicomflow.messages.records import WatchKind, WatchMessage
from dicomflow.ports import ErrorLog, HealthcareApi, ObjectStore, Publisher
from dicomflow.reconcile.logged_reasons import LoggedReasons
from dicomflow.stages.follow.context import FollowContext, FollowResult, FollowState
from dicomflow.stages.follow.exports import EXPORT_ATTEMPTS, ExportStep
from dicomflow.stages.follow.imports import ImportStep
from dicomflow.stages.follow.pending import PendingStep
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
        self._stores = stores or (lambda _store: healthcare)
        self._clock, self._sleep = clock, sleep
        self._reasons = LoggedReasons(error_log, settings.failure_log_wait_seconds, clock, sleep)
        ledger = BatchLedger(store, settings.state_bucket, settings.state_prefix, now=now)
        self._context = FollowContext(settings, store, healthcare, publisher, now, ledger)

    def follow(self, watch: WatchMessage) -> FollowResult:
        """Raise OperationPendingError while the operation runs (redelivery), return once its effects are done."""
        manifest = self._context.ledger.open(watch.manifest_uri)
        context = replace(self._context, healthcare=self._stores(manifest.store))  # the store of this batch's route
        where = fields(batch_id=manifest.batch_id, operation=watch.operation, kind=watch.kind)
        operation, polls = PendingStep(context, self._clock, self._sleep).wait(manifest, watch)
        exports, finish = ExportStep(context, self._reasons), FinishStep(context)
        if watch.kind is WatchKind.IMPORT:
            result = ImportStep(context, self._reasons).done(manifest, watch, operation)
            if context.import_markers(manifest) is not None:  # every import reconciled: on to the exports
                exports.start(manifest, result)
                finish.finish(manifest, result)
        elif watch.target:
            result = exports.done(manifest, watch, operation)
            if result.state is FollowState.EXPORTED:  # its outcome recorded, not started again
                finish.finish(manifest, result)
        else:
            raise PermanentError("export watch message names no target")
        result.polls = polls
        log.info("operation followed up", extra=fields(**where["fields"], state=result.state, polls=polls))
        return result

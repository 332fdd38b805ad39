"""The follow-up's first step: the watched operation awaited -- polled while it runs for up to
FOLLOW_POLL_SECONDS of this delivery (then OperationPendingError, so Pub/Sub redelivers), reported stuck once
older than OPERATION_MAX_AGE_SECONDS (once: claimed in the ledger first)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from dicomflow.errors import OperationPendingError
from dicomflow.ledger.failures import report_failed
from dicomflow.ledger.manifest import Manifest
from dicomflow.logs import fields
from dicomflow.messages import lro
from dicomflow.messages.records import FailedFile, WatchMessage
from dicomflow.stages.follow.context import FollowContext

log = logging.getLogger(__package__)  # the follow-up's one logger: its lines keep the name dicomflow.stages.follow


class PendingStep:
    def __init__(self, context: FollowContext, clock: Callable[[], float], sleep: Callable[[float], None]) -> None:
        self._ctx = context
        self._clock, self._sleep = clock, sleep

    def wait(self, manifest: Manifest, watch: WatchMessage) -> tuple[dict[str, Any], int]:
        """The operation once it is done (or reported stuck) and how many operations.get calls that took: polled
        every FOLLOW_INTERVAL_SECONDS for up to FOLLOW_POLL_SECONDS of this delivery, so its end is noticed
        within an interval, not at Pub/Sub's next redelivery; OperationPendingError when it still runs then."""
        settings = self._ctx.settings
        deadline = self._clock() + settings.follow_poll_seconds
        polls = 0
        while True:
            operation = self._ctx.healthcare.get_operation(watch.operation)
            polls += 1
            if operation.get("done"):
                return operation, polls
            age = lro.age_seconds(operation, self._ctx.now())
            if age >= settings.operation_max_age_seconds:
                self._report_stuck(manifest, watch, age)
                return {**operation, "stuck": True}, polls
            wait = min(settings.follow_interval_seconds, deadline - self._clock())
            if wait <= 0:
                where = fields(batch_id=manifest.batch_id, operation=watch.operation, kind=watch.kind, polls=polls)
                log.info("operation still running", extra=where)
                raise OperationPendingError(f"{watch.operation} is not done yet")
            self._sleep(wait)

    def _report_stuck(self, manifest: Manifest, watch: WatchMessage, age: float) -> None:
        ctx = self._ctx
        if not ctx.ledger.claim_once(manifest.batch_id, f"stuck-{watch.operation.rpartition('/')[2]}"):
            return  # another delivery of this watch reported it
        reason = f"operation {watch.operation} still not done after {age:.0f}s; reported stuck, not waited for"
        stuck = FailedFile.of_watch(ctx.ledger.bucket, watch, reason)
        report_failed([stuck], ctx.settings, ctx.publisher, ctx.store)
        log.error("operation stuck", extra=fields(batch_id=manifest.batch_id, operation=watch.operation))

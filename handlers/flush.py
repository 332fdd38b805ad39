"""``on_flush``: a scheduler tick -> pull, settle, plan, import, watch, ack."""

from __future__ import annotations

import logging
from typing import Any

from dicomflow.errors import PermanentError, RetryableError
from dicomflow.flush import FlushReport, run_flush
from dicomflow.logs import fields
from handlers.runtime import runtime

log = logging.getLogger(__name__)


def handle(cloud_event: Any) -> FlushReport | None:
    """One flush per tick; a failed flush raises so the tick is retried (its records were given back)."""
    rt = runtime("on_flush")
    try:
        return run_flush(
            rt.settings, subscriber=rt.subscriber, publisher=rt.publisher, store=rt.store, healthcare=rt.healthcare
        )
    except RetryableError as exc:
        log.warning("flush did not finish; records come back on a later tick", extra=fields(error=str(exc)))
        raise
    except PermanentError as exc:
        log.error("flush failed", extra=fields(error=str(exc)))
        return None

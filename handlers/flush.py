"""``on_flush``: a scheduler tick -> passes of pull, settle, plan, import, record, watch, ack for most of the
tick (FLUSH_RUN_SECONDS)."""

from __future__ import annotations

import logging
import threading

from cloudevents.http import CloudEvent

from dicomflow.stages.flush import FlushRun, run_flush_for
from handlers.dispatch import serve
from handlers.runtime import Runtime

log = logging.getLogger(__name__)
_running = threading.Lock()  # one flush per process, even when a server thread takes a second tick


def _flush(rt: Runtime, _tick: CloudEvent) -> FlushRun | None:
    if not _running.acquire(blocking=False):
        log.warning("a flush is still running in this instance; tick skipped")
        return None
    try:
        return run_flush_for(rt.settings, subscriber=rt.subscriber, publisher=rt.publisher, store=rt.store,
                             healthcare=rt.healthcare, stores=rt.stores)  # fmt: skip
    finally:
        _running.release()


def handle(cloud_event: CloudEvent) -> FlushRun | None:
    """One flush run per tick. Whatever fails, the records it held come back for a later pass; a transient
    failure of its last pass fails the tick, a permanent one (e.g. a denied permission) is logged and the tick
    acknowledged. A tick that arrives while this instance still flushes is acknowledged and skipped."""
    return serve("on_flush", cloud_event, lambda event: event, _flush)

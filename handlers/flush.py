"""``on_flush``: a scheduler tick -> pull, settle, plan, import, record, watch, ack."""

from __future__ import annotations

from cloudevents.http import CloudEvent

from dicomflow.flush import FlushReport, run_flush
from handlers.dispatch import serve
from handlers.runtime import Runtime


def _flush(rt: Runtime, _tick: CloudEvent) -> FlushReport:
    return run_flush(rt.settings, subscriber=rt.subscriber, publisher=rt.publisher, store=rt.store,
                     healthcare=rt.healthcare, stores=rt.stores)  # fmt: skip


def handle(cloud_event: CloudEvent) -> FlushReport | None:
    """One flush per tick. Whatever fails, the records it held come back for a later tick; a transient failure
    also fails the tick (retried), a permanent one (e.g. a denied permission) is logged and the tick acked."""
    return serve("on_flush", cloud_event, lambda event: event, _flush)

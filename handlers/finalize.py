"""``on_object_finalized``: a GCS finalize event (Eventarc, or a Pub/Sub notification) -> intake."""

from __future__ import annotations

import logging
from typing import Any

from dicomflow.errors import PermanentError, RetryableError
from dicomflow.events import parse_object_event
from dicomflow.intake import handle_object_event
from dicomflow.logs import fields
from handlers.runtime import runtime

log = logging.getLogger(__name__)


def handle(cloud_event: Any) -> None:
    """Return to acknowledge; raise to have the event redelivered (transient failures only)."""
    rt = runtime("on_object_finalized")
    event_type = str(cloud_event["type"])
    try:
        event = parse_object_event(event_type, cloud_event.data, cloud_event.get("time"))
    except PermanentError as exc:
        log.error("malformed event acknowledged", extra=fields(event_type=event_type, error=str(exc)))
        return
    if event is None:
        log.debug("event type not handled", extra=fields(event_type=event_type))
        return
    try:
        handle_object_event(event, rt.settings, store=rt.store, publisher=rt.publisher)
    except RetryableError as exc:
        log.warning("transient failure; the event will be redelivered", extra=fields(object=event.name, error=str(exc)))
        raise
    except PermanentError as exc:
        log.error("object could not be queued", extra=fields(object=event.name, error=str(exc)))

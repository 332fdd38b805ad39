"""The one policy every trigger follows: parse the event, call the core, then acknowledge or ask for a retry.

Functions-framework turns a return into HTTP 200 (acknowledged) and an exception into HTTP 500 (Pub/Sub and
Eventarc redeliver with backoff). So:

    malformed event, or a type we do not handle  -> logged (never the payload), reported (``on_malformed``),
                                                    acknowledged
    RetryableError (429, 5xx, timeouts)          -> logged at WARNING, raised: redelivered
    OperationPendingError                        -> raised: redelivered (logged at INFO by the core)
    PermanentError (invalid, denied, not found)  -> logged at ERROR, reported (``on_permanent``), acknowledged
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from cloudevents.http import CloudEvent

from dicomflow.errors import MalformedEventError, OperationPendingError, PermanentError, RetryableError
from dicomflow.logs import fields
from handlers.runtime import Runtime, runtime

log = logging.getLogger(__name__)
Item = TypeVar("Item")
Result = TypeVar("Result")


def serve(
    component: str,
    cloud_event: CloudEvent,
    parse: Callable[[CloudEvent], Item | None],
    call: Callable[[Runtime, Item], Result],
    *,
    describe: Callable[[Item], Mapping[str, Any]] = lambda _: {},
    on_permanent: Callable[[Runtime, Item, PermanentError], None] | None = None,
    on_malformed: Callable[[Runtime, CloudEvent, MalformedEventError], None] | None = None,
) -> Result | None:
    """Run one event through ``parse`` and ``call`` under the policy above; the core's answer, or None."""
    rt = runtime(component)
    event_type = str(cloud_event["type"])
    try:
        item = parse(cloud_event)
    except MalformedEventError as exc:
        log.error("malformed event acknowledged", extra=fields(event_type=event_type, error=str(exc)))
        if on_malformed is not None:
            on_malformed(rt, cloud_event, exc)
        return None
    if item is None:
        log.debug("event type not handled", extra=fields(event_type=event_type))
        return None
    try:
        return call(rt, item)
    except OperationPendingError:
        raise
    except RetryableError as exc:
        log.warning("transient failure; the event will be redelivered",
                    extra=fields(**describe(item), error=str(exc)))  # fmt: skip
        raise
    except PermanentError as exc:
        log.error("failed for good; acknowledged and reported",
                  extra=fields(**describe(item), error=str(exc), status=exc.status))  # fmt: skip
        if on_permanent is not None:
            on_permanent(rt, item, exc)
        return None

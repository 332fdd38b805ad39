"""``on_operation``: a watch message from ``dicom-operations`` -> follow the operation up."""

from __future__ import annotations

import logging
from typing import Any

from dicomflow.errors import OperationPendingError, PermanentError, RetryableError
from dicomflow.events import PUBSUB_PUBLISHED, pubsub_message
from dicomflow.follow import Follower
from dicomflow.logs import fields
from dicomflow.records import WatchMessage
from handlers.runtime import runtime

log = logging.getLogger(__name__)


def handle(cloud_event: Any) -> None:
    """Return to acknowledge; raise while the operation runs or on transient failures (Pub/Sub redelivers)."""
    rt = runtime("on_operation")
    if str(cloud_event["type"]) != PUBSUB_PUBLISHED:
        log.debug("event type not handled", extra=fields(event_type=str(cloud_event["type"])))
        return
    try:
        watch = WatchMessage.from_json(pubsub_message(cloud_event.data).data)
    except PermanentError as exc:
        log.error("malformed watch message acknowledged", extra=fields(error=str(exc)))
        return
    follower = Follower(rt.settings, store=rt.store, healthcare=rt.healthcare, publisher=rt.publisher)
    try:
        follower.follow(watch)
    except OperationPendingError:
        raise  # logged at INFO by the follower: not an error, just "again later"
    except RetryableError as exc:
        log.warning("transient failure; the watch will be redelivered",
                    extra=fields(batch_id=watch.batch_id, operation=watch.operation, error=str(exc)))  # fmt: skip
        raise
    except PermanentError as exc:
        log.error("watch message cannot be followed up",
                  extra=fields(batch_id=watch.batch_id, operation=watch.operation, error=str(exc)))  # fmt: skip

"""Poison messages: pulled or pushed messages the pipeline will never process (unparseable, or naming a bucket
it does not serve), settled once with their reason instead of coming back for ever.

A pending message goes to the dead-letter topic of ``PENDING_TOPIC`` (``{PENDING_TOPIC}-dead-letter``) with
its bytes and attributes unchanged and three more attributes: ``dead_letter_reason`` (names the field, never a
value), ``dead_letter_subscription`` and ``dead_letter_message_id``; then it is acknowledged. The pending
subscription has no dead-letter policy (records of folders still settling are handed back on purpose), so
the flush does this itself. Where that topic is missing or refused, the message is reported on dicom-failed
instead (stage ``message``). A watch that cannot be parsed is reported on dicom-failed the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from dicomflow.config.settings import Settings
from dicomflow.errors import PermanentError
from dicomflow.ledger.failures import report_failed
from dicomflow.logs import fields
from dicomflow.messages.records import FailedFile, Stage
from dicomflow.ports import Message, ObjectStore, Publisher, ReceivedMessage

log = logging.getLogger(__name__)
_MAX_ATTRIBUTES = 97  # Pub/Sub allows 100 attributes: room for the three we add


@dataclass(frozen=True)
class Poison:
    """A pulled message that will never be processed, and why (the reason names a field, never a value)."""

    message: ReceivedMessage
    reason: str


def message_failure(source: str, message_id: str | None, reason: str) -> FailedFile:
    """A message (not a file) reported on dicom-failed: ``name`` is ``pubsub:{source}/{message id}``."""
    return FailedFile("", f"pubsub:{source}/{message_id or 'unknown'}", None, reason, Stage.MESSAGE)


def dead_letter(
    poison: Sequence[Poison], settings: Settings, publisher: Publisher, store: ObjectStore, *, subscription: str
) -> None:
    """Publish every poison message on the pending dead-letter topic (one call), or report them on dicom-failed
    when that topic refuses for good. Raises RetryableError when neither could be done now (they come back)."""
    if not poison:
        return
    topic = settings.pending_dead_letter_topic
    messages: list[Message] = [(p.message.data, _attributes(p, subscription)) for p in poison]
    try:
        publisher.publish(topic, messages)
    except PermanentError as exc:
        log.error("dead-letter topic refused; poison messages reported on the failed topic instead",
                  extra=fields(topic=topic, status=exc.status, error=str(exc), messages=len(poison)))  # fmt: skip
        report_failed([message_failure(subscription, p.message.message_id, p.reason) for p in poison],
                      settings, publisher, store)  # fmt: skip
        return
    log.warning("poison messages dead-lettered", extra=fields(topic=topic, messages=len(poison)))


def _attributes(poison: Poison, subscription: str) -> dict[str, str]:
    kept = {k: v for k, v in list(poison.message.attributes.items())[:_MAX_ATTRIBUTES]
            if isinstance(k, str) and isinstance(v, str)}  # fmt: skip
    return {**kept, "dead_letter_reason": poison.reason, "dead_letter_subscription": subscription,
            "dead_letter_message_id": str(poison.message.message_id)}  # fmt: skip

"""CloudEvents in, value objects out: GCS finalize events (direct or via a Pub/Sub notification).

Pure functions driven by constants; every malformed shape becomes one MalformedEventError whose message
names what is missing, never the payload.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dicomflow import parsing
from dicomflow.errors import MalformedEventError
from dicomflow.messages.records import MAX_OBJECT_BYTES
from dicomflow.parsing import MAX_MESSAGE_BYTES, guarded

STORAGE_FINALIZED = "google.cloud.storage.object.v1.finalized"
PUBSUB_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"
GCS_NOTIFICATION_FINALIZE = "OBJECT_FINALIZE"
_MAX_ATTRIBUTES = 100  # Pub/Sub allows at most 100 attributes on a message


@dataclass(frozen=True)
class ObjectEvent:
    """An object that was written (finalized) in a bucket."""

    bucket: str
    name: str
    generation: str
    size: int | None
    crc32c: str | None
    event_time: str


@dataclass(frozen=True)
class PubSubMessage:
    data: bytes
    attributes: Mapping[str, str]
    message_id: str | None
    publish_time: str | None


def pubsub_message(data: Any) -> PubSubMessage:
    """The message inside a ``messagePublished`` event's data (``{"message": {...}, "subscription": ...}``)."""
    with guarded("Pub/Sub envelope"):
        if not isinstance(data, Mapping) or not isinstance(data.get("message"), Mapping):
            raise MalformedEventError("messagePublished event has no 'message' object")
        message = data["message"]
        raw = message.get("data") or ""
        if not isinstance(raw, str):
            raise MalformedEventError("Pub/Sub message data is not a base64 string")
        if len(raw) > MAX_MESSAGE_BYTES * 4 // 3 + 4:
            raise MalformedEventError("Pub/Sub message data is larger than Pub/Sub allows")
        try:
            payload = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise MalformedEventError("Pub/Sub message data is not valid base64") from exc
        attributes = message.get("attributes") or {}
        if (not isinstance(attributes, Mapping) or len(attributes) > _MAX_ATTRIBUTES
                or not all(isinstance(k, str) and isinstance(v, str) and len(k) <= 256 and len(v) <= 1024
                           for k, v in attributes.items())):  # fmt: skip
            raise MalformedEventError("Pub/Sub message attributes are not a string map")
        envelope = "Pub/Sub message"
        return PubSubMessage(
            payload,
            dict(attributes),
            parsing.optional_text(message, "messageId", envelope, max_chars=256),
            parsing.optional_text(message, "publishTime", envelope, max_chars=64),
        )


def parse_object_event(event_type: str, data: Any, event_time: str | None) -> ObjectEvent | None:
    """An ObjectEvent for a finalize event in either shape; None for event types we do not handle. Total: any
    other input is a MalformedEventError naming the field."""
    with guarded("storage event"):
        return _parse_object_event(event_type, data, event_time)


def _parse_object_event(event_type: str, data: Any, event_time: str | None) -> ObjectEvent | None:
    if event_type == STORAGE_FINALIZED:
        return _from_object_resource(data, event_time)
    if event_type == PUBSUB_PUBLISHED:
        message = pubsub_message(data)
        kind = message.attributes.get("eventType")
        if kind != GCS_NOTIFICATION_FINALIZE:
            return None
        resource: Any = {}
        if message.data:
            try:
                resource = parsing.load_json(message.data, "GCS notification payload")
            except MalformedEventError as exc:
                raise MalformedEventError(f"{exc} (payloadFormat JSON_API_V1?)") from None
        if not isinstance(resource, Mapping):
            raise MalformedEventError("GCS notification payload is not a JSON object")
        merged = {
            "bucket": message.attributes.get("bucketId"),
            "name": message.attributes.get("objectId"),
            "generation": message.attributes.get("objectGeneration"),
            **{k: v for k, v in resource.items() if v is not None},
        }
        return _from_object_resource(merged, message.publish_time or event_time)
    return None


def _from_object_resource(resource: Any, event_time: str | None) -> ObjectEvent:
    if not isinstance(resource, Mapping):
        raise MalformedEventError("storage event data is not an object resource")
    missing = [key for key in ("bucket", "name", "generation") if not resource.get(key)]
    if missing:
        raise MalformedEventError(f"storage event lacks {', '.join(missing)}")
    what = "storage event"
    if not isinstance(resource["name"], str) or not isinstance(resource["bucket"], str):
        raise MalformedEventError("storage event bucket/name are not strings")
    generation = resource["generation"]
    if isinstance(generation, int) and not isinstance(generation, bool):
        generation = str(generation)
    size = resource.get("size")
    parsed_size = None if size is None else parsing.integer(resource, "size", what, minimum=0, maximum=MAX_OBJECT_BYTES)
    time = resource.get("timeCreated") or resource.get("updated") or event_time
    if not time:
        raise MalformedEventError("storage event has no time")
    return ObjectEvent(
        bucket=parsing.text(resource, "bucket", what, max_chars=222),
        name=parsing.object_name(resource, "name", what),
        generation=parsing.text({"generation": generation}, "generation", what, pattern=parsing.GENERATION),
        size=parsed_size,
        crc32c=parsing.optional_text(resource, "crc32c", what, max_chars=16),
        event_time=parsing.text({"time": time}, "time", what, max_chars=64),
    )

"""CloudEvents in, value objects out: GCS finalize events (direct or via a Pub/Sub notification).

Pure functions driven by constants; every malformed shape becomes one MalformedEventError whose message
names what is missing, never the payload.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dicomflow.errors import MalformedEventError

STORAGE_FINALIZED = "google.cloud.storage.object.v1.finalized"
PUBSUB_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"
GCS_NOTIFICATION_FINALIZE = "OBJECT_FINALIZE"
MAX_MESSAGE_BYTES = 10 * 1024 * 1024


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
    if not isinstance(attributes, Mapping) or not all(isinstance(v, str) for v in attributes.values()):
        raise MalformedEventError("Pub/Sub message attributes are not a string map")
    return PubSubMessage(
        payload, dict(attributes), _opt_str(message.get("messageId")), _opt_str(message.get("publishTime"))
    )


def parse_object_event(event_type: str, data: Any, event_time: str | None) -> ObjectEvent | None:
    """An ObjectEvent for a finalize event in either shape; None for event types we do not handle."""
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
                resource = json.loads(message.data)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise MalformedEventError("GCS notification payload is not JSON (payloadFormat JSON_API_V1?)") from exc
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
    name = resource["name"]
    if not isinstance(name, str) or not isinstance(resource["bucket"], str):
        raise MalformedEventError("storage event bucket/name are not strings")
    size = resource.get("size")
    try:
        parsed_size = int(size) if size is not None else None
    except (TypeError, ValueError) as exc:
        raise MalformedEventError("storage event size is not an integer") from exc
    time = resource.get("timeCreated") or resource.get("updated") or event_time
    if not time:
        raise MalformedEventError("storage event has no time")
    return ObjectEvent(
        bucket=resource["bucket"],
        name=name,
        generation=str(resource["generation"]),
        size=parsed_size,
        crc32c=_opt_str(resource.get("crc32c")),
        event_time=str(time),
    )


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)

"""``on_object_finalized``: a GCS finalize event (Eventarc, or a Pub/Sub notification) -> intake."""

from __future__ import annotations

from cloudevents.http import CloudEvent

from dicomflow.events import ObjectEvent, parse_object_event
from dicomflow.intake import IntakeOutcome, handle_object_event
from handlers.dispatch import serve
from handlers.runtime import Runtime


def _parse(cloud_event: CloudEvent) -> ObjectEvent | None:
    return parse_object_event(str(cloud_event["type"]), cloud_event.data, cloud_event.get("time"))


def _intake(rt: Runtime, event: ObjectEvent) -> IntakeOutcome:
    return handle_object_event(event, rt.settings, store=rt.store, publisher=rt.publisher)


def handle(cloud_event: CloudEvent) -> IntakeOutcome | None:
    """Intake one object; a permanent failure (e.g. a topic that does not exist) is logged and acknowledged."""
    return serve("on_object_finalized", cloud_event, _parse, _intake,
                 describe=lambda event: {"bucket": event.bucket, "object": event.name})  # fmt: skip

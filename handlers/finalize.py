"""``on_object_finalized``: a GCS finalize event (Eventarc, or a Pub/Sub notification) -> intake."""

from __future__ import annotations

from cloudevents.http import CloudEvent

from dicomflow.errors import PermanentError, RetryableError
from dicomflow.ledger.failures import report_failed
from dicomflow.messages.events import ObjectEvent, parse_object_event
from dicomflow.messages.records import FailedFile, Stage
from dicomflow.stages.intake import IntakeOutcome, handle_object_event
from handlers.dispatch import serve
from handlers.runtime import Runtime


def _parse(cloud_event: CloudEvent) -> ObjectEvent | None:
    return parse_object_event(str(cloud_event["type"]), cloud_event.data, cloud_event.get("time"))


def _intake(rt: Runtime, event: ObjectEvent) -> IntakeOutcome:
    return handle_object_event(event, rt.settings, store=rt.store, publisher=rt.publisher)


def _report(rt: Runtime, event: ObjectEvent, error: PermanentError) -> None:
    """A file intake could not queue for good (its pending topic missing, publishing denied) is reported on
    dicom-failed with a failure note, so that ``dicomflow requeue --stage intake`` announces it again once the
    cause is fixed. When that report is refused too, the event is redelivered (Eventarc retries for a day)."""
    reason = f"queueing it for import was refused for good: {error}"
    failed = FailedFile(event.bucket, event.name, event.generation, reason, Stage.INTAKE)
    try:
        report_failed([failed], rt.settings, rt.publisher, rt.store)
    except PermanentError as exc:
        raise RetryableError(f"reporting a file intake could not queue was refused too: {exc}") from exc


def handle(cloud_event: CloudEvent) -> IntakeOutcome | None:
    """Intake one object; a permanent failure (e.g. a topic that does not exist) is reported and acknowledged."""
    return serve("on_object_finalized", cloud_event, _parse, _intake, on_permanent=_report,
                 describe=lambda event: {"bucket": event.bucket, "object": event.name})  # fmt: skip

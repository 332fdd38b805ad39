"""Intake: one finalized object in, one pending record (or a failed file, a ready marker, a skipped DICOMDIR) out.

``examine`` decides (selection, header sniffing) and ``publish`` sends; the operator CLI's backfill and
verify examine objects the same way without (or before) publishing."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from dicomflow.config.settings import Settings
from dicomflow.dicom.sniff import MediaDirectory, sniff_header
from dicomflow.errors import NotDicomError, ObjectGoneError, PermanentError
from dicomflow.ledger.failures import report_failed
from dicomflow.logs import fields
from dicomflow.messages.events import ObjectEvent
from dicomflow.messages.records import FailedFile, PendingRecord, ReadyMarker, SkippedFile, Stage
from dicomflow.ports import Message, ObjectStore, Publisher

log = logging.getLogger(__name__)


class IntakeOutcome(Enum):
    PENDING = "pending"
    FAILED = "failed"
    IGNORED_FOREIGN_BUCKET = "ignored-foreign-bucket"
    IGNORED_EXCLUDED = "ignored-excluded"
    IGNORED_NOT_SELECTED = "ignored-not-selected"
    IGNORED_GONE = "ignored-gone"
    SKIPPED_MEDIA_DIRECTORY = "skipped-media-directory"
    READY_MARKER = "ready-marker"


def select(settings: Settings, name: str) -> str | None:
    """'suffix' when the name marks DICOM, 'sniff' when only the content can tell, None when not selected."""
    lowered = name.lower()
    if any(lowered.endswith(suffix) for suffix in settings.dicom_suffixes):
        return "suffix"
    base = name.rpartition("/")[2]
    if settings.sniff_extensionless and base and "." not in base:
        return "sniff"
    return None


@dataclass(frozen=True)
class Examined:
    """What intake decided for one object: its outcome, and the message (record, failure, marker, skipped
    DICOMDIR) it would publish."""

    outcome: IntakeOutcome
    record: PendingRecord | None = None
    failed: FailedFile | None = None
    marker: ReadyMarker | None = None
    skipped: SkippedFile | None = None


def handle_object_event(
    event: ObjectEvent, settings: Settings, *, store: ObjectStore, publisher: Publisher
) -> IntakeOutcome:
    """Select, sniff and publish; raises RetryableError for transient failures (the event is redelivered)."""
    examined = examine(event, settings, store=store)
    publish_all([examined], settings, publisher, store)
    return examined.outcome


def publish_all(examined: Sequence[Examined], settings: Settings, publisher: Publisher, store: ObjectStore) -> None:
    """Publish what examinations produced: records, markers and skipped notes on the pending topic, failures on
    the failed topic (with their notes), one publish call per topic, so the batching client sends a backfill's
    chunk together."""
    outgoing: dict[str, list[Message]] = {}
    for item in examined:
        if item.record is not None:
            topic, message = settings.pending_topic, (item.record.to_json(), {"bucket": item.record.bucket})
        elif item.marker is not None:
            topic, message = settings.pending_topic, (item.marker.to_json(), {"bucket": item.marker.bucket})
        elif item.skipped is not None:  # counted in its file-set's batch result (the skip line was logged)
            topic, message = settings.pending_topic, (item.skipped.to_json(), {"bucket": item.skipped.bucket})
        else:
            continue
        outgoing.setdefault(topic, []).append(message)
    for topic, messages in outgoing.items():
        publisher.publish(topic, messages)
    report_failed([item.failed for item in examined if item.failed is not None], settings, publisher, store)
    for item in examined:
        if item.record is not None:
            record = item.record
            where = fields(bucket=record.bucket, object=record.name, generation=record.generation,
                           sop_uid=record.sop_uid)  # fmt: skip
            log.info("object queued for import", extra=where)
        elif item.marker is not None:
            log.info("folder marked ready", extra=fields(bucket=item.marker.bucket, folder=item.marker.folder))


def examine(event: ObjectEvent, settings: Settings, *, store: ObjectStore) -> Examined:
    """Selection and header sniffing, without publishing (intake, backfill and verify share it)."""
    where = fields(bucket=event.bucket, object=event.name, generation=event.generation)
    if event.bucket not in settings.source_buckets:
        log.debug("event from a bucket that is not a source bucket ignored", extra=where)
        return Examined(IntakeOutcome.IGNORED_FOREIGN_BUCKET)
    if settings.excluded(event.bucket, event.name):
        log.debug("excluded object ignored", extra=where)
        return Examined(IntakeOutcome.IGNORED_EXCLUDED)
    head, _, base = event.name.rpartition("/")
    if settings.ready_marker and base == settings.ready_marker:
        folder = f"{head}/" if head else ""
        return Examined(IntakeOutcome.READY_MARKER, marker=ReadyMarker(event.bucket, folder, event.event_time))
    selection = select(settings, event.name)
    if selection is None:
        log.debug("object not selected as DICOM", extra=where)
        return Examined(IntakeOutcome.IGNORED_NOT_SELECTED)
    try:
        header = sniff_header(
            lambda start, end: store.read_range(event.bucket, event.name, event.generation, start, end),
            event.size,
            first_read=settings.header_read_bytes,
            max_bytes=settings.max_header_bytes,
        )
    except ObjectGoneError:
        log.info("object or generation no longer exists; nothing to import", extra=where)
        return Examined(IntakeOutcome.IGNORED_GONE)
    except NotDicomError as exc:
        if selection == "sniff":
            log.debug("extensionless object is not DICOM", extra=where)
            return Examined(IntakeOutcome.IGNORED_NOT_SELECTED)
        log.warning("object is not importable DICOM", extra=fields(**where["fields"], reason=str(exc)))
        failed = FailedFile(event.bucket, event.name, event.generation, str(exc), Stage.INTAKE)
        return Examined(IntakeOutcome.FAILED, failed=failed)
    except PermanentError as exc:  # the read was refused for good (403, 400): reported, not dropped
        log.error("object cannot be read; reported", extra=fields(**where["fields"], status=exc.status,
                                                                   reason=str(exc)))  # fmt: skip
        reason = f"reading the object was refused for good: {exc}"
        failed = FailedFile(event.bucket, event.name, event.generation, reason, Stage.INTAKE)
        return Examined(IntakeOutcome.FAILED, failed=failed)
    if isinstance(header, MediaDirectory):
        log.info("DICOMDIR (index of a media file-set, not an instance) skipped", extra=where)
        skipped = SkippedFile(event.bucket, event.name, event.generation, event.event_time)
        return Examined(IntakeOutcome.SKIPPED_MEDIA_DIRECTORY, skipped=skipped)
    record = PendingRecord(
        bucket=event.bucket,
        name=event.name,
        generation=event.generation,
        size=event.size if event.size is not None else -1,
        crc32c=event.crc32c,
        study_uid=header.study_uid,
        series_uid=header.series_uid,
        sop_uid=header.sop_uid,
        transfer_syntax=header.transfer_syntax,
        modality=header.modality,
        event_time=event.event_time,
    )
    log.debug(
        "DICOM header read",
        extra=fields(**where["fields"], sop_uid=header.sop_uid, header_bytes_read=header.bytes_read),
    )
    return Examined(IntakeOutcome.PENDING, record=record)

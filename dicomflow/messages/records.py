"""The small versioned JSON messages the pipeline passes between its steps."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from dicomflow import parsing
from dicomflow.errors import MalformedEventError
from dicomflow.parsing import guarded

RECORD_VERSION = 1
BATCH_TIME_FORMAT = "%Y%m%dT%H%M%SZ"  # batch ids start with their UTC creation time in this form: they sort by it
BATCH_ID = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9._\-]{0,127}")  # a path segment of the ledger
MAX_OBJECT_BYTES = 5 * 1024**4  # Cloud Storage's largest object (5 TiB)
MAX_ATTEMPT = 1000
_GS_URI = re.compile(r"gs://[a-z0-9][a-z0-9._\-]{1,220}[a-z0-9]/[^\r\n]{1,1024}")


class Stage(StrEnum):
    """Where a file (or a batch's follow-up) failed: the ``stage`` of a dicom-failed message."""

    INTAKE = "intake"
    DELETED = "deleted"  # the object (that generation) was deleted or replaced before it could be imported
    RECONCILE = "reconcile"
    CONFLICT = "conflict"  # the store holds the same UIDs with other content; this file was not stored
    OPERATION = "operation"  # the operation itself: stuck, or its follow-up refused for good
    STAGING = "staging"  # the copy into the staging prefix was refused for good (403, 400), MAX_ATTEMPTS times
    MESSAGE = "message"  # a message (not a file) that cannot be processed: a watch or record that does not parse


class WatchKind(StrEnum):
    IMPORT = "import"
    EXPORT = "export"


@dataclass(frozen=True)
class PendingRecord:
    """One uploaded DICOM object waiting to be imported (topic ``dicom-pending``)."""

    bucket: str
    name: str
    generation: str
    size: int
    crc32c: str | None
    study_uid: str
    series_uid: str
    sop_uid: str
    transfer_syntax: str
    modality: str | None
    event_time: str
    attempt: int = 1
    replaced: bool = False  # CONFLICT_POLICY=replace deleted the stored instance for it once: never again

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.bucket, self.name, self.generation)

    @property
    def directory(self) -> str:
        """The folder the object lives in ('' at the bucket root), ending with '/'."""
        head, slash, _ = self.name.rpartition("/")
        return head + slash

    def to_json(self) -> bytes:
        return json.dumps({"version": RECORD_VERSION, **asdict(self)}, sort_keys=True).encode()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: bytes) -> PendingRecord:
        return cls.from_dict(_load(data, "pending record"))

    @classmethod
    def from_dict(cls, body: Mapping[str, Any]) -> PendingRecord:
        """From the record's JSON object (extra keys, e.g. a manifest entry's ``via``, are ignored); every field
        type- and range-checked (MalformedEventError naming the field)."""
        what = "pending record"
        with guarded(what):
            body = parsing.obj(body, what)
            return cls(
                bucket=parsing.text(body, "bucket", what, pattern=parsing.BUCKET),
                name=parsing.object_name(body, "name", what),
                generation=parsing.text(body, "generation", what, pattern=parsing.GENERATION),
                size=parsing.integer(body, "size", what, minimum=-1, maximum=MAX_OBJECT_BYTES),
                crc32c=parsing.optional_text(body, "crc32c", what, max_chars=16),
                study_uid=parsing.text(body, "study_uid", what, pattern=parsing.UID),
                series_uid=parsing.text(body, "series_uid", what, pattern=parsing.UID),
                sop_uid=parsing.text(body, "sop_uid", what, pattern=parsing.UID),
                transfer_syntax=parsing.text(body, "transfer_syntax", what, max_chars=64),
                modality=parsing.optional_text(body, "modality", what, max_chars=16),
                event_time=parsing.text(body, "event_time", what, max_chars=64),
                attempt=parsing.integer(body, "attempt", what, minimum=1, maximum=MAX_ATTEMPT, default=1),
                replaced=parsing.flag(body, "replaced"),
            )


@dataclass(frozen=True)
class ReadyMarker:
    """A sender marked a folder complete (READY_MARKER): on the pending topic beside the records."""

    bucket: str
    folder: str  # ends with '/' ('' at the bucket root)
    event_time: str

    def covers(self, record: PendingRecord) -> bool:
        """The record lies in the marked folder (or below) and arrived no later than the marker."""
        return (record.bucket == self.bucket and record.name.startswith(self.folder)
                and instant(record.event_time, _NEVER) <= instant(self.event_time, _NEVER))  # fmt: skip

    def to_json(self) -> bytes:
        return json.dumps({"version": RECORD_VERSION, "kind": "ready", **asdict(self)}, sort_keys=True).encode()


@dataclass(frozen=True)
class SkippedFile:
    """A ``DICOMDIR`` intake skipped (never imported): on the pending topic beside the records, so that flush
    counts it in the batch result of its file-set -- the files of its folder and below."""

    bucket: str
    name: str
    generation: str
    event_time: str

    @property
    def folder(self) -> str:
        """The file-set's root folder ('' at the bucket root), ending with '/'."""
        head, slash, _ = self.name.rpartition("/")
        return head + slash

    def covers(self, record: PendingRecord) -> bool:
        """The record belongs to this DICOMDIR's file-set (its folder or below)."""
        return record.bucket == self.bucket and record.name.startswith(self.folder)

    def to_json(self) -> bytes:
        return json.dumps({"version": RECORD_VERSION, "kind": "skipped", **asdict(self)}, sort_keys=True).encode()


def parse_pending(data: bytes) -> PendingRecord | ReadyMarker | SkippedFile:
    """A message of the pending topic: a file's record, a folder's ready marker, or a skipped DICOMDIR.
    Total: any other input is a MalformedEventError naming the field."""
    with guarded("pending message"):
        body = _load(data, "pending record")
        kind = body.get("kind")
        if kind == "ready":
            what = "pending ready marker"
            return ReadyMarker(parsing.text(body, "bucket", what, pattern=parsing.BUCKET),
                               _folder(body, what), parsing.text(body, "event_time", what, max_chars=64))  # fmt: skip
        if kind == "skipped":
            what = "pending skipped DICOMDIR"
            return SkippedFile(parsing.text(body, "bucket", what, pattern=parsing.BUCKET),
                               parsing.object_name(body, "name", what),
                               parsing.text(body, "generation", what, pattern=parsing.GENERATION),
                               parsing.text(body, "event_time", what, max_chars=64))  # fmt: skip
        if kind is not None:
            raise MalformedEventError("pending message has an unknown kind")
        return PendingRecord.from_dict(body)


def _folder(body: Mapping[str, Any], what: str) -> str:
    folder = parsing.text(body, "folder", what, max_chars=parsing.MAX_NAME_BYTES)
    if folder and not folder.endswith("/"):
        raise MalformedEventError(f"{what} field 'folder' does not end with '/'")
    return folder


@dataclass(frozen=True)
class FailedFile:
    """A file that will not be imported, and why (topic ``dicom-failed``)."""

    bucket: str
    name: str
    generation: str | None
    reason: str
    stage: Stage
    attempt: int = 1
    batch_id: str | None = None
    operation: str | None = None
    target: str | None = None  # stage operation of an export or de-id: its target's name (``requeue`` reruns it)

    @classmethod
    def of_watch(cls, bucket: str, watch: WatchMessage, reason: str) -> FailedFile:
        """A watched operation that will not be followed (stuck, or refused for good): named by the batch's
        manifest, with the batch, the operation and, for an export or de-id, its target."""
        return cls(bucket, watch.manifest_uri, None, reason, Stage.OPERATION, batch_id=watch.batch_id,
                   operation=watch.operation, target=watch.target)  # fmt: skip

    def to_json(self) -> bytes:
        return json.dumps({"version": RECORD_VERSION, **asdict(self)}, sort_keys=True).encode()

    def attributes(self) -> dict[str, str]:
        return {"stage": str(self.stage), "bucket": self.bucket}


@dataclass(frozen=True)
class WatchMessage:
    """Follow one long-running operation of a batch (topic ``dicom-operations``)."""

    operation: str
    batch_id: str
    manifest_uri: str
    kind: WatchKind
    target: str | None = None  # the export target's name (exports only)

    def to_json(self) -> bytes:
        return json.dumps({"version": RECORD_VERSION, **asdict(self)}, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> WatchMessage:
        """Total: any input that is not a watch is a MalformedEventError naming the field."""
        what = "watch message"
        with guarded(what):
            body = _load(data, what)
            kind = parsing.text(body, "kind", what, max_chars=16)
            if kind not in {k.value for k in WatchKind}:
                raise MalformedEventError("watch message has an unknown kind")
            return cls(
                parsing.text(body, "operation", what, max_chars=1100, pattern=parsing.OPERATION),
                parsing.text(body, "batch_id", what, max_chars=128, pattern=BATCH_ID),
                parsing.text(body, "manifest_uri", what, max_chars=2048, pattern=_GS_URI),
                WatchKind(kind),
                parsing.optional_text(body, "target", what, max_chars=256),
            )


def instant(value: str, default: datetime) -> datetime:
    """An event time as an aware datetime (``default`` when it cannot be read)."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return default
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


_NEVER = datetime.max.replace(tzinfo=UTC)  # an unreadable time never counts as before a marker


def _load(data: bytes, what: str) -> dict[str, Any]:
    body = parsing.load_object(data, what)
    version = body.get("version")
    if version != RECORD_VERSION or isinstance(version, bool):
        raise MalformedEventError(f"{what} has an unsupported version")
    return body

"""The small versioned JSON messages the pipeline passes between its steps."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from dicomflow.errors import MalformedEventError

RECORD_VERSION = 1
BATCH_TIME_FORMAT = "%Y%m%dT%H%M%SZ"  # batch ids start with their UTC creation time in this form: they sort by it


class Stage(StrEnum):
    """Where a file (or a batch's follow-up) failed: the ``stage`` of a dicom-failed message."""

    INTAKE = "intake"
    DELETED = "deleted"  # the object (that generation) was deleted or replaced before it could be imported
    RECONCILE = "reconcile"
    CONFLICT = "conflict"  # the store holds the same UIDs with other content; this file was not stored
    OPERATION = "operation"  # the operation itself: stuck, or its follow-up refused for good


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
        """From the record's JSON object (extra keys, e.g. a manifest entry's ``via``, are ignored)."""
        try:
            return cls(
                bucket=str(body["bucket"]),
                name=str(body["name"]),
                generation=str(body["generation"]),
                size=int(body["size"]),
                crc32c=body.get("crc32c"),
                study_uid=str(body["study_uid"]),
                series_uid=str(body["series_uid"]),
                sop_uid=str(body["sop_uid"]),
                transfer_syntax=str(body["transfer_syntax"]),
                modality=body.get("modality"),
                event_time=str(body["event_time"]),
                attempt=int(body.get("attempt", 1)),
                replaced=body.get("replaced") is True,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedEventError(f"pending record lacks a valid field: {exc.__class__.__name__} {exc}") from exc


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
    """A message of the pending topic: a file's record, a folder's ready marker, or a skipped DICOMDIR."""
    body = _load(data, "pending record")
    kind = body.get("kind")
    try:
        if kind == "ready":
            return ReadyMarker(str(body["bucket"]), str(body["folder"]), str(body["event_time"]))
        if kind == "skipped":
            return SkippedFile(str(body["bucket"]), str(body["name"]), str(body["generation"]),
                               str(body["event_time"]))  # fmt: skip
    except KeyError as exc:
        raise MalformedEventError(f"pending {kind} message lacks field {exc}") from exc
    return PendingRecord.from_dict(body)


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
        body = _load(data, "watch message")
        try:
            target = body.get("target")
            return cls(
                str(body["operation"]),
                str(body["batch_id"]),
                str(body["manifest_uri"]),
                WatchKind(body["kind"]),
                None if target is None else str(target),
            )
        except KeyError as exc:
            raise MalformedEventError(f"watch message lacks field {exc}") from exc
        except ValueError as exc:
            raise MalformedEventError("watch message has an unknown kind") from exc


def instant(value: str, default: datetime) -> datetime:
    """An event time as an aware datetime (``default`` when it cannot be read)."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return default
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


_NEVER = datetime.max.replace(tzinfo=UTC)  # an unreadable time never counts as before a marker


def _load(data: bytes, what: str) -> dict[str, Any]:
    try:
        body = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedEventError(f"{what} is not JSON") from exc
    if not isinstance(body, dict):
        raise MalformedEventError(f"{what} is not a JSON object")
    version = body.get("version")
    if version != RECORD_VERSION:
        raise MalformedEventError(f"{what} has unsupported version {version!r}")
    return body

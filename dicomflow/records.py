"""The small versioned JSON messages the pipeline passes between its steps."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from dicomflow.errors import MalformedEventError

RECORD_VERSION = 1


class Stage(StrEnum):
    """Where a file (or a batch's follow-up) failed: the ``stage`` of a dicom-failed message."""

    INTAKE = "intake"
    DELETED = "deleted"  # the object (that generation) was deleted or replaced before it could be imported
    RECONCILE = "reconcile"
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
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedEventError(f"pending record lacks a valid field: {exc.__class__.__name__} {exc}") from exc


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

"""Every interface the core uses, and the value types that cross them.

The core (intake, flush, follow-up, ledger, planner) imports this module, never an adapter or a Google SDK;
``dicomflow.adapters`` implements these Protocols on the Google clients and ``tests/fakes`` in memory.
Implementations raise only ``dicomflow.errors`` types.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

Message = tuple[bytes, Mapping[str, str]]


@dataclass(frozen=True)
class Listing:
    """Object names under a prefix (direct children only when listed with a delimiter)."""

    names: tuple[str, ...]
    truncated: bool
    calls: int


@dataclass(frozen=True)
class ObjectInfo:
    """One object's current generation and what intake needs to know about it."""

    bucket: str
    name: str
    generation: str
    size: int | None
    crc32c: str | None
    updated: str  # RFC 3339


@dataclass(frozen=True)
class ReceivedMessage:
    """One pulled Pub/Sub message and the ack id that settles it."""

    ack_id: str
    data: bytes
    attributes: Mapping[str, str]
    message_id: str


class ObjectLister(Protocol):
    def list_objects(self, bucket: str, prefix: str, *, recursive: bool, limit: int) -> Listing:
        """Up to ``limit`` object names under ``prefix``; ``truncated`` when there were more."""


class ObjectStore(ObjectLister, Protocol):
    def read_range(self, bucket: str, name: str, generation: str | None, start: int, end: int) -> bytes:
        """Bytes ``start``..``end-1`` of that generation (fewer at the end; ObjectGoneError when it is gone)."""

    def read(self, bucket: str, name: str, generation: str | None = None) -> bytes:
        """The whole object (ObjectGoneError when it, or that generation, is gone)."""

    def write_json(self, bucket: str, name: str, body: Any) -> str:
        """Write (or overwrite) a JSON object; return its gs:// URI."""

    def write_text(self, bucket: str, name: str, text: str) -> str:
        """Write (or overwrite) a text object; return its gs:// URI."""

    def read_json(self, bucket: str, name: str) -> tuple[Any, int] | None:
        """(body, generation), or None when the object does not exist."""

    def put_json(self, bucket: str, name: str, body: Any, *, if_generation: int) -> int | None:
        """Write only if the object's generation is ``if_generation`` (0 = it must not exist); return the new
        generation, or None when the precondition failed."""

    def stat(self, bucket: str, name: str) -> ObjectInfo | None:
        """The object's current generation, or None when it does not exist."""

    def iterate(self, bucket: str, prefix: str, *, start_after: str | None = None) -> Iterator[ObjectInfo]:
        """Every object under ``prefix`` in name order, after ``start_after`` (a resumable listing)."""

    def delete(self, bucket: str, name: str) -> bool:
        """Delete the object; False when it did not exist (deleting is idempotent)."""

    def copy(self, bucket: str, name: str, generation: str, to_bucket: str, to_name: str) -> None:
        """Server-side copy of that generation (ObjectGoneError once it is gone), driven to completion."""


class Publisher(Protocol):
    def publish(self, topic: str, messages: Sequence[Message]) -> list[str]:
        """Publish and wait until every message is accepted; return the message ids."""


class Subscriber(Protocol):
    def pull(
        self, subscription: str, max_messages: int, *, wait_seconds: float = 2.0, max_seconds: float | None = None
    ) -> list[ReceivedMessage]:
        """Up to ``max_messages`` messages (fewer when the subscription runs dry); waits up to ``wait_seconds``
        for the first one. ``max_seconds``: pulls no more once that long has passed since the first message
        arrived, so the first ones are still within their ack deadline when the caller leases them (None: no
        bound)."""

    def ack(self, subscription: str, ack_ids: Sequence[str]) -> None:
        """Acknowledge: the messages are done."""

    def nack(self, subscription: str, ack_ids: Sequence[str]) -> None:
        """Give the messages back for redelivery now."""

    def extend(self, subscription: str, ack_ids: Sequence[str], seconds: int) -> None:
        """Set the ack deadline of held messages to ``seconds`` from now."""


class HealthcareApi(Protocol):
    """One DICOM store of the Cloud Healthcare API."""

    @property
    def store_name(self) -> str:
        """``projects/P/locations/L/datasets/D/dicomStores/S``."""

    def start_import(self, uri: str, storage_class: str | None) -> str:
        """Start an import of ``uri``; return the operation name."""

    def get_operation(self, name: str) -> dict[str, Any]:
        """The operation's JSON."""

    def start_export(self, body: dict[str, Any]) -> str:
        """Start ``dicomStores.export`` with ``body``; return the operation name."""

    def start_deidentify(self, body: dict[str, Any]) -> str:
        """Start ``dicomStores.deidentify`` of this store with ``body``; return the operation name."""

    def series_instances(self, study_uid: str, series_uid: str) -> set[str]:
        """The SOP Instance UIDs the store holds in one series (empty when the series is absent)."""

    def study_instances(self, study_uid: str) -> set[tuple[str, str]]:
        """The (Series, SOP Instance UID) pairs the store holds in one study (empty when the study is absent)."""

    def retrieve_instance(self, study_uid: str, series_uid: str, sop_uid: str) -> bytes:
        """The stored instance as a Part-10 file, in its stored transfer syntax (NotFoundError when absent)."""

    def delete_instance(self, study_uid: str, series_uid: str, sop_uid: str) -> bool:
        """Delete one stored instance (DICOMweb DELETE, synchronous for an instance); False when it was not there."""


@dataclass(frozen=True)
class FileError:
    """One item an operation failed, with the API's own reason (from Cloud Logging)."""

    source: str  # gs:// URI of an imported object, or the DICOMweb path of an exported/de-identified instance
    code: int  # google.rpc.Code
    message: str


class ErrorLog(Protocol):
    """The per-item errors the Healthcare API logged for an operation (Cloud Logging)."""

    def operation_errors(self, operation_name: str, limit: int) -> list[FileError]:
        """At most ``limit`` errors of ``operation_name`` (projects/P/locations/L/datasets/D/operations/ID),
        oldest first; empty when none are logged (yet: ingestion lags)."""

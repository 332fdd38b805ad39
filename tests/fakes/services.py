"""In-memory fakes of the adapter Protocols: Cloud Storage, Pub/Sub, the Healthcare API, Cloud Logging."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from dicomflow.errors import NotFoundError, ObjectGoneError, RetryableError
from dicomflow.ports import FileError, Listing, ObjectInfo, ReceivedMessage
from tests.fakes.bucket import FakeLister

_EPOCH = datetime(2026, 12, 2, 12, 0, 0, tzinfo=UTC)  # the fake store's clock starts here


class FakeStore:
    def __init__(self, objects: dict[tuple[str, str], bytes] | None = None) -> None:
        self.objects = dict(objects or {})
        self.reads: list[tuple[str, str, int, int]] = []
        self.generations: dict[tuple[str, str], int] = {}
        self.source_generations: dict[tuple[str, str], str] = {}  # the live generation, where a test sets one
        self.copies: list[tuple[tuple[str, str, str], tuple[str, str]]] = []
        self.listings = 0
        self.updated: dict[tuple[str, str], str] = {}  # when each object was last written, one second apart
        self._clock = itertools.count()

    def _written(self, bucket: str, name: str, data: bytes) -> None:
        self.objects[(bucket, name)] = data
        self.updated[(bucket, name)] = (_EPOCH + timedelta(seconds=next(self._clock))).isoformat()

    def read_range(self, bucket: str, name: str, generation: str | None, start: int, end: int) -> bytes:
        if (bucket, name) not in self.objects:
            raise ObjectGoneError(f"gs://{bucket}/{name}: not found")
        self.reads.append((bucket, name, start, end))
        return self.objects[(bucket, name)][start:end]

    def read(self, bucket: str, name: str, generation: str | None = None) -> bytes:
        if (bucket, name) not in self.objects:
            raise ObjectGoneError(f"gs://{bucket}/{name}: not found")
        return self.objects[(bucket, name)]

    def write_json(self, bucket: str, name: str, body: Any) -> str:
        self._written(bucket, name, json.dumps(body).encode())
        return f"gs://{bucket}/{name}"

    def write_text(self, bucket: str, name: str, text: str) -> str:
        self._written(bucket, name, text.encode())
        return f"gs://{bucket}/{name}"

    def read_json(self, bucket: str, name: str) -> tuple[Any, int] | None:
        if (bucket, name) not in self.objects:
            return None
        return json.loads(self.objects[(bucket, name)]), self.generations.get((bucket, name), 1)

    def put_json(self, bucket: str, name: str, body: Any, *, if_generation: int) -> int | None:
        current = self.generations.get((bucket, name), 1) if (bucket, name) in self.objects else 0
        if current != if_generation:
            return None
        self._written(bucket, name, json.dumps(body).encode())
        self.generations[(bucket, name)] = current + 1
        return current + 1

    def copy(self, bucket: str, name: str, generation: str, to_bucket: str, to_name: str) -> None:
        current = self.source_generations.get((bucket, name))
        if (bucket, name) not in self.objects or (current is not None and current != generation):
            raise ObjectGoneError(f"copying gs://{bucket}/{name}: HTTP 404")
        self.copies.append(((bucket, name, generation), (to_bucket, to_name)))
        self._written(to_bucket, to_name, self.objects[(bucket, name)])

    def stat(self, bucket: str, name: str) -> ObjectInfo | None:
        if (bucket, name) not in self.objects:
            return None
        generation = self.source_generations.get((bucket, name), "1")
        updated = self.updated.get((bucket, name), _EPOCH.isoformat())  # objects a test put in: all at _EPOCH
        return ObjectInfo(bucket, name, generation, len(self.objects[(bucket, name)]), None, updated)

    def iterate(self, bucket: str, prefix: str, *, start_after: str | None = None) -> Iterator[ObjectInfo]:
        for b, name in sorted(self.objects):
            if b == bucket and name.startswith(prefix) and (start_after is None or name > start_after):
                info = self.stat(b, name)
                if info is not None:
                    yield info

    def delete(self, bucket: str, name: str) -> bool:
        self.generations.pop((bucket, name), None)
        return self.objects.pop((bucket, name), None) is not None

    def list_objects(self, bucket: str, prefix: str, *, recursive: bool, limit: int) -> Listing:
        self.listings += 1
        names = [n for b, n in self.objects if b == bucket]
        return FakeLister(names).list_objects(bucket, prefix, recursive=recursive, limit=limit)


@dataclass
class FakePublisher:
    published: list[tuple[str, bytes, dict[str, str]]] = field(default_factory=list)
    fail_topics: set[str] = field(default_factory=set)
    missing_topics: set[str] = field(default_factory=set)  # refused for good (404), as a topic that does not exist

    def publish(self, topic: str, messages: Sequence[tuple[bytes, Mapping[str, str]]]) -> list[str]:
        if topic in self.fail_topics:
            raise RetryableError(f"publishing to {topic} failed")
        if topic in self.missing_topics:
            raise NotFoundError(f"publishing to {topic}: HTTP 404 topic not found", 404)
        self.published.extend((topic, data, dict(attributes)) for data, attributes in messages)
        return [str(len(self.published) - i) for i in range(len(messages))]

    def bodies(self, topic: str) -> list[dict[str, Any]]:
        return [json.loads(data) for t, data, _ in self.published if t == topic]


class FakeSubscriber:
    """A subscription: pull leases messages; ack removes; nack (or deadline 0) makes them pullable again."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self.available: dict[str, bytes] = {}
        self.leased: dict[str, bytes] = {}
        self.acked: list[str] = []
        self.pull_bounds: list[float | None] = []  # the max_seconds of every pull

    def put(self, data: bytes) -> None:
        self.available[f"ack-{next(self._ids)}"] = data

    def pull(
        self, subscription: str, max_messages: int, *, wait_seconds: float = 2.0, max_seconds: float | None = None
    ) -> list[ReceivedMessage]:
        self.pull_bounds.append(max_seconds)
        taken = list(self.available.items())[:max_messages]
        for ack_id, data in taken:
            del self.available[ack_id]
            self.leased[ack_id] = data
        return [ReceivedMessage(ack_id, data, {}, ack_id) for ack_id, data in taken]

    def ack(self, subscription: str, ack_ids: Sequence[str]) -> None:
        for ack_id in ack_ids:
            self.leased.pop(ack_id, None)
            self.acked.append(ack_id)

    def nack(self, subscription: str, ack_ids: Sequence[str]) -> None:
        for ack_id in ack_ids:
            if ack_id in self.leased:
                self.available[ack_id] = self.leased.pop(ack_id)

    def extend(self, subscription: str, ack_ids: Sequence[str], seconds: int) -> None:
        if seconds == 0:
            self.nack(subscription, ack_ids)


@dataclass
class FakeHealthcare:
    store_name: str = "projects/p/locations/l/datasets/d/dicomStores/s"
    imports: list[str] = field(default_factory=list)
    storage_classes: list[str | None] = field(default_factory=list)  # the storage class of each import started
    fail_imports: int = 0
    refuse_imports: dict[str, Exception] = field(default_factory=dict)  # uri -> the error start_import raises
    exports: list[dict[str, Any]] = field(default_factory=list)
    operations: dict[str, dict[str, Any]] = field(default_factory=dict)
    stored: set[tuple[str, str, str]] = field(default_factory=set)
    contents: dict[tuple[str, str, str], bytes] = field(default_factory=dict)  # what WADO-RS returns
    delete_calls: list[tuple[str, str, str]] = field(default_factory=list)  # every DICOMweb DELETE of an instance
    refuse_deletes: Exception | None = None  # what delete_instance raises, where a test sets it
    deidentifies: list[dict[str, Any]] = field(default_factory=list)  # every dicomStores.deidentify body
    refuse_deidentify: Exception | None = None  # what start_deidentify raises, where a test sets it

    def start_import(self, uri: str, storage_class: str | None) -> str:
        if self.fail_imports:
            self.fail_imports -= 1
            raise RetryableError("HTTP 503")
        if uri in self.refuse_imports:
            raise self.refuse_imports[uri]
        self.imports.append(uri)
        self.storage_classes.append(storage_class)
        return f"projects/p/locations/l/datasets/d/operations/{len(self.imports)}"

    def get_operation(self, name: str) -> dict[str, Any]:
        return self.operations.get(name, {"name": name, "done": True, "response": {}})

    def start_export(self, body: dict[str, Any]) -> str:
        self.exports.append(body)
        return f"projects/p/locations/l/datasets/d/operations/export-{len(self.exports)}"

    def start_deidentify(self, body: dict[str, Any]) -> str:
        if self.refuse_deidentify is not None:
            raise self.refuse_deidentify
        self.deidentifies.append(body)
        return f"projects/p/locations/l/datasets/d/operations/deidentify-{len(self.deidentifies)}"

    def retrieve_instance(self, study_uid: str, series_uid: str, sop_uid: str) -> bytes:
        if (study_uid, series_uid, sop_uid) not in self.contents:
            raise NotFoundError("WADO-RS: HTTP 404", 404)
        return self.contents[(study_uid, series_uid, sop_uid)]

    def series_instances(self, study_uid: str, series_uid: str) -> set[str]:
        return {sop for study, series, sop in self.stored if (study, series) == (study_uid, series_uid)}

    def study_instances(self, study_uid: str) -> set[tuple[str, str]]:
        return {(series, sop) for study, series, sop in self.stored if study == study_uid}

    def delete_instance(self, study_uid: str, series_uid: str, sop_uid: str) -> bool:
        key = (study_uid, series_uid, sop_uid)
        self.delete_calls.append(key)
        if self.refuse_deletes is not None:
            raise self.refuse_deletes
        if key not in self.stored:
            return False
        self.stored.discard(key)
        self.contents.pop(key, None)
        return True


@dataclass
class FakeErrorLog:
    """ErrorLog in memory: each operation's logged errors, hidden from the first ``lag_reads`` reads (ingestion
    lag), or every read refused with ``refuse``; ``reads`` records (operation, limit) of each call."""

    entries: dict[str, list[FileError]] = field(default_factory=dict)
    lag_reads: int = 0
    shown: list[int] = field(default_factory=list)  # per read after the lag, how many entries it shows
    refuse: Exception | None = None
    reads: list[tuple[str, int]] = field(default_factory=list)

    def operation_errors(self, operation_name: str, limit: int) -> list[FileError]:
        self.reads.append((operation_name, limit))
        if self.refuse is not None:
            raise self.refuse
        if len(self.reads) <= self.lag_reads:
            return []
        read = len(self.reads) - self.lag_reads - 1
        shown = self.shown[min(read, len(self.shown) - 1)] if self.shown else limit
        return self.entries.get(operation_name, [])[: min(limit, shown)]

"""Flush: pull pending records, let folders settle, plan a wildcard cover, start imports, publish watches, ack.

Order matters for "nothing is lost": a record is acknowledged only after the import covering it was accepted
by the API, the batch manifest was written and the watch message was published. A crash anywhere before
that leaves the record unacknowledged, so a later tick repeats the work; the store ignores duplicates.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from dicomflow.adapters.healthcare import HealthcareApi
from dicomflow.adapters.pubsub import Publisher, ReceivedMessage, Subscriber, leased
from dicomflow.adapters.storage import ObjectStore
from dicomflow.errors import ApiError, MalformedEventError, ObjectGoneError, RetryableError
from dicomflow.logs import fields
from dicomflow.planner import ImportUri, plan_imports
from dicomflow.records import RECORD_VERSION, FailedFile, PendingRecord, WatchMessage
from dicomflow.settings import Settings

log = logging.getLogger(__name__)

Key = tuple[str, str, str]
_LEFTOVER_URI_FILES = 2


@dataclass
class FlushReport:
    """What one flush did; logged as one line and returned to tests and benchmarks."""

    batch_id: str | None = None
    pulled: int = 0
    malformed: int = 0
    duplicates: int = 0
    deferred: int = 0
    running_before: int = 0
    imports_started: int = 0
    imported_files: int = 0
    stowed: int = 0
    failed: int = 0
    listing_calls: int = 0
    overshoot: int = 0
    manifest_uri: str | None = None
    operations: list[str] = field(default_factory=list)


@dataclass
class _Held:
    """The records of one flush with the ack ids of every delivery (duplicates included)."""

    records: dict[Key, PendingRecord] = field(default_factory=dict)
    ack_ids: dict[Key, list[str]] = field(default_factory=lambda: defaultdict(list))
    to_ack: list[str] = field(default_factory=list)
    to_nack: list[str] = field(default_factory=list)

    def done(self, keys: Sequence[Key]) -> None:
        for key in keys:
            self.to_ack.extend(self.ack_ids.pop(key, []))

    def defer(self, keys: Sequence[Key]) -> None:
        for key in keys:
            self.to_nack.extend(self.ack_ids.pop(key, []))


def utc_now() -> datetime:
    return datetime.now(UTC)


def _time(value: str, default: datetime) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return default
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def ready_keys(records: Sequence[PendingRecord], settings: Settings, now: datetime, batch_full: bool) -> set[Key]:
    """Records whose folder settled (no upload for SETTLE_SECONDS), waited MAX_WAIT_SECONDS, or a full batch."""
    if batch_full:
        return {r.key for r in records}
    folders: dict[tuple[str, str], list[PendingRecord]] = defaultdict(list)
    for record in records:
        folders[(record.bucket, record.directory)].append(record)
    ready: set[Key] = set()
    for members in folders.values():
        times = [_time(r.event_time, now) for r in members]
        settled = (now - max(times)).total_seconds() >= settings.settle_seconds
        overdue = (now - min(times)).total_seconds() >= settings.max_wait_seconds
        if settled or overdue:
            ready.update(r.key for r in members)
    return ready


def batch_id_for(now: datetime, keys: Sequence[Key]) -> str:
    digest = hashlib.sha256("\n".join("\t".join(k) for k in sorted(keys)).encode()).hexdigest()[:10]
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{digest}"


def run_flush(
    settings: Settings,
    *,
    subscriber: Subscriber,
    publisher: Publisher,
    store: ObjectStore,
    healthcare: HealthcareApi,
    now: Callable[[], datetime] = utc_now,
) -> FlushReport:
    """One flush tick. Raises RetryableError when it could not finish (its records come back later)."""
    report = FlushReport()
    subscription = settings.pending_subscription
    messages = subscriber.pull(subscription, settings.max_batch_files)
    report.pulled = len(messages)
    if not messages:
        return report
    held = _hold(messages, report)
    failure: BaseException | None = None
    with leased(subscriber, subscription, [m.ack_id for m in messages], settings.flush_lease_seconds):
        try:
            _flush_held(settings, held, report, publisher=publisher, store=store, healthcare=healthcare, now=now())
        except BaseException as exc:  # give every undecided record back before re-raising
            failure = exc
    held.defer(list(held.ack_ids))  # anything neither done nor deferred explicitly comes back
    _settle_acks(subscriber, subscription, held)
    if failure is not None:
        raise failure
    log.info("flush finished", extra=fields(**{k: v for k, v in asdict(report).items() if k != "operations"}))
    return report


def _hold(messages: Sequence[ReceivedMessage], report: FlushReport) -> _Held:
    held = _Held()
    for message in messages:
        try:
            record = PendingRecord.from_json(message.data)
        except MalformedEventError as exc:
            report.malformed += 1
            held.to_ack.append(message.ack_id)
            log.error("malformed pending record dropped", extra=fields(message_id=message.message_id, error=str(exc)))
            continue
        if record.key in held.records:
            report.duplicates += 1
        else:
            held.records[record.key] = record
        held.ack_ids[record.key].append(message.ack_id)
    return held


def _settle_acks(subscriber: Subscriber, subscription: str, held: _Held) -> None:
    if held.to_ack:
        subscriber.ack(subscription, held.to_ack)
        held.to_ack = []
    if held.to_nack:
        subscriber.nack(subscription, held.to_nack)
        held.to_nack = []


def _flush_held(
    settings: Settings,
    held: _Held,
    report: FlushReport,
    *,
    publisher: Publisher,
    store: ObjectStore,
    healthcare: HealthcareApi,
    now: datetime,
) -> None:
    records = list(held.records.values())
    batch_full = report.pulled >= settings.max_batch_files
    ready = ready_keys(records, settings, now, batch_full)
    waiting = [r.key for r in records if r.key not in ready]
    held.defer(waiting)
    report.deferred += len(waiting)
    if not ready:
        return
    report.running_before = healthcare.running_imports()
    slots = max(0, settings.max_concurrent_operations - report.running_before)

    by_bucket: dict[str, dict[str, PendingRecord]] = defaultdict(dict)
    superseded: list[Key] = []
    for key in sorted(ready, key=lambda k: (k[0], k[1], int(k[2]) if k[2].isdigit() else 0)):
        record = held.records[key]
        older = by_bucket[record.bucket].get(record.name)
        if older is not None:  # the object was overwritten: the newest generation is what an import reads
            superseded.append(older.key)
        by_bucket[record.bucket][record.name] = record
    if superseded:
        held.done(superseded)
        report.duplicates += len(superseded)
    candidates: list[tuple[str, ImportUri]] = []
    stow: list[PendingRecord] = []
    for bucket, named in sorted(by_bucket.items()):
        plan = plan_imports(bucket, named, store, listing_cap=settings.listing_cap)
        report.listing_calls += plan.listing_calls
        report.overshoot += plan.overshoot
        candidates.extend((bucket, item) for item in plan.imports)
        stow.extend(named[name] for name in plan.stow)
    candidates.sort(key=lambda c: -len(c[1].files))
    chosen, later = candidates[:slots], candidates[slots:]
    budget = settings.stow_leftovers
    for bucket, item in later:
        records = [by_bucket[bucket][name] for name in item.files]
        if len(records) <= _LEFTOVER_URI_FILES and len(records) <= budget:
            # a URI for one or two files would wait for an operation slot: send those files with STOW-RS now
            stow.extend(records)
            budget -= len(records)
            continue
        held.defer([r.key for r in records])
        report.deferred += len(records)

    batch_keys = [by_bucket[b][n].key for b, i in chosen for n in i.files] + [r.key for r in stow]
    if not batch_keys:
        log.info("no capacity for new imports; records wait", extra=fields(running=report.running_before))
        return
    report.batch_id = batch_id_for(now, batch_keys)
    started, refused = _start_imports(settings, chosen, by_bucket, held, report, healthcare)
    stow.extend(refused)
    stow_outcomes = _stow(settings, stow, held, report, store=store, healthcare=healthcare, publisher=publisher)
    if not started and not stow_outcomes:
        return
    manifest = _manifest(settings, report, started, by_bucket, stow_outcomes, now)
    report.manifest_uri = store.write_json(
        settings.state_bucket, f"{settings.state_prefix}batches/{report.batch_id}/manifest.json", manifest
    )
    watches = [
        (
            WatchMessage(operation, report.batch_id, report.manifest_uri, "import").to_json(),
            {"batch_id": report.batch_id, "kind": "import"},
        )
        for _, _, operation in started
    ]
    if watches:
        publisher.publish(settings.operations_topic, watches)
    for bucket, item, _ in started:
        held.done([by_bucket[bucket][name].key for name in item.files])
    held.done([r.key for r in stow_outcomes])


def _start_imports(
    settings: Settings,
    chosen: list[tuple[str, ImportUri]],
    by_bucket: dict[str, dict[str, PendingRecord]],
    held: _Held,
    report: FlushReport,
    healthcare: HealthcareApi,
) -> tuple[list[tuple[str, ImportUri, str]], list[PendingRecord]]:
    """Start the chosen imports; a URI the API refuses as invalid (400) falls back to STOW-RS of its files."""
    started: list[tuple[str, ImportUri, str]] = []
    refused: list[PendingRecord] = []
    for index, (bucket, item) in enumerate(chosen):
        keys = [by_bucket[bucket][name].key for name in item.files]
        try:
            operation = healthcare.start_import(item.uri, settings.blob_storage_class)
        except RetryableError as exc:
            rest = [by_bucket[b][n].key for b, i in chosen[index:] for n in i.files]
            held.defer(rest)
            report.deferred += len(rest)
            log.warning("import could not start; its files wait", extra=fields(uri=item.uri, error=str(exc)))
            break
        except ApiError as exc:
            log.error("import refused", extra=fields(uri=item.uri, status=exc.status, error=str(exc)))
            if exc.status != 400:  # 403/404: configuration or permissions; keep the files and retry later
                raise RetryableError(f"import of {item.uri} refused: {exc}") from exc
            refused.extend(by_bucket[bucket][name] for name in item.files)
            continue
        started.append((bucket, item, operation))
        report.imports_started += 1
        report.imported_files += len(keys)
        report.operations.append(operation)
        log.info(
            "import started",
            extra=fields(batch_id=report.batch_id, operation=operation, uri=item.uri, files=len(keys)),
        )
    return started, refused


def _stow(
    settings: Settings,
    records: list[PendingRecord],
    held: _Held,
    report: FlushReport,
    *,
    store: ObjectStore,
    healthcare: HealthcareApi,
    publisher: Publisher,
) -> list[PendingRecord]:
    """STOW-RS the files no import URI can address; failures go to dicom-failed. Returns the records handled."""
    handled: list[PendingRecord] = []
    for record in records:
        try:
            data = store.read(record.bucket, record.name, record.generation)
            result = healthcare.stow(data)
            reason = result.reason if not result.stored else None
        except ObjectGoneError:
            reason = "object no longer exists"
        except ApiError as exc:
            reason = f"STOW-RS refused the file: HTTP {exc.status}"
        if reason is None:
            report.stowed += 1
        else:
            failed = FailedFile(
                record.bucket, record.name, record.generation, reason, "stow", record.attempt, report.batch_id
            )
            publisher.publish(settings.failed_topic, [(failed.to_json(), failed.attributes())])
            report.failed += 1
        handled.append(record)
        log.info(
            "file sent with STOW-RS", extra=fields(batch_id=report.batch_id, object=record.name, ok=reason is None)
        )
    return handled


def _manifest(
    settings: Settings,
    report: FlushReport,
    started: list[tuple[str, ImportUri, str]],
    by_bucket: dict[str, dict[str, PendingRecord]],
    stowed: list[PendingRecord],
    now: datetime,
) -> dict[str, Any]:
    files: list[dict[str, Any]] = []
    imports = []
    for bucket, item, operation in started:
        imports.append({"uri": item.uri, "operation": operation, "files": len(item.files)})
        files.extend({**asdict(by_bucket[bucket][name]), "via": item.uri} for name in item.files)
    files.extend({**asdict(record), "via": "stow"} for record in stowed)
    return {
        "version": RECORD_VERSION,
        "batch_id": report.batch_id,
        "created": now.isoformat(),
        "store": settings.store_name,
        "imports": imports,
        "files": files,
        "counts": {"files": len(files), "imports": len(imports), "stow": report.stowed, "failed": report.failed},
        "duplicates": report.duplicates,
        "planner": {"listing_calls": report.listing_calls, "overshoot": report.overshoot},
    }

"""Flush: pull pending records, let folders settle, plan a wildcard cover, start imports, record the batch,
publish watches, ack.

Order matters for "nothing is lost": a record is acknowledged only after the import covering it was accepted
by the API, the batch was written to the ledger and the watch message was published. A crash anywhere before
that leaves the record unacknowledged, so a later tick repeats the work; the store ignores duplicates.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from dicomflow.errors import InvalidRequestError, ObjectGoneError, PermanentError, RetryableError
from dicomflow.held import Held, Key, leased
from dicomflow.ledger import VIA_STOW, BatchLedger, ImportEntry, Manifest, ManifestFile
from dicomflow.logs import fields
from dicomflow.planner import ImportUri, plan_imports
from dicomflow.ports import HealthcareApi, ObjectStore, Publisher, Subscriber
from dicomflow.records import FailedFile, PendingRecord, Stage, WatchKind, WatchMessage
from dicomflow.selection import Newest, allocate, batch_id_for, newest_generations, ready_keys
from dicomflow.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class FlushReport:
    """What one flush did; logged as one line and returned to tests and benchmarks."""

    batch_id: str | None = None
    pulled: int = 0
    malformed: int = 0
    redelivered: int = 0
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


def utc_now() -> datetime:
    return datetime.now(UTC)


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
    held = Held.from_messages(messages)
    report.malformed, report.redelivered = held.malformed, held.redelivered
    ledger = BatchLedger(store, settings.state_bucket, settings.state_prefix, now=now)
    batch = _Batch(settings, held, report, ledger, publisher, store, healthcare, now())
    try:
        with leased(subscriber, subscription, [m.ack_id for m in messages], settings.flush_lease_seconds):
            batch.run()
    finally:  # every record not settled explicitly comes back, whatever happened
        held.settle(subscriber, subscription)
    log.info("flush finished", extra=fields(**{k: v for k, v in asdict(report).items() if k != "operations"}))
    return report


@dataclass
class _Batch:
    """The sequence of one flush over the records it holds."""

    settings: Settings
    held: Held
    report: FlushReport
    ledger: BatchLedger
    publisher: Publisher
    store: ObjectStore
    healthcare: HealthcareApi
    now: datetime

    def run(self) -> None:
        settings, report = self.settings, self.report
        records = list(self.held.records.values())
        ready = ready_keys(
            records, settle_seconds=settings.settle_seconds, max_wait_seconds=settings.max_wait_seconds,
            now=self.now, batch_full=report.pulled >= settings.max_batch_files,
        )  # fmt: skip
        self._wait([r.key for r in records if r.key not in ready])
        if not ready:
            return
        report.running_before = self.ledger.imports_in_flight(
            self.healthcare.store_name, settings.operation_max_age_seconds
        )
        newest = newest_generations(self.held.records[k] for k in ready)
        chosen, stow = self._plan(newest)
        batch_keys = [newest.record(b, n).key for b, i in chosen for n in i.files] + [r.key for r in stow]
        if not batch_keys:
            self._wait(newest.superseded)
            log.info("no capacity for new imports; records wait", extra=fields(running=report.running_before))
            return
        report.batch_id = batch_id_for(self.now, batch_keys)
        started, refused, problem = self._start_imports(newest, chosen)
        stowed = self._stow([*stow, *refused])
        if started or stowed:
            self._record(newest, started, stowed)
        else:
            self._wait(newest.superseded)
        if problem is not None:
            raise problem

    # ----- plan -----

    def _plan(self, newest: Newest) -> tuple[list[tuple[str, ImportUri]], list[PendingRecord]]:
        """Plan every bucket and give the free slots to the largest URIs: (URIs to start, records to STOW now)."""
        candidates: list[tuple[str, ImportUri]] = []
        stow: list[PendingRecord] = []
        for bucket, named in sorted(newest.by_bucket.items()):
            plan = plan_imports(bucket, named, self.store, listing_cap=self.settings.listing_cap)
            self.report.listing_calls += plan.listing_calls
            self.report.overshoot += plan.overshoot
            candidates.extend((bucket, item) for item in plan.imports)
            stow.extend(named[name] for name in plan.stow)
        slots = max(0, self.settings.max_concurrent_operations - self.report.running_before)
        allocation = allocate(candidates, slots=slots, stow_budget=self.settings.stow_leftovers)
        self._wait([newest.record(b, n).key for b, n in allocation.waiting])
        return allocation.chosen, stow + [newest.record(b, n) for b, n in allocation.stow]

    # ----- effects -----

    def _start_imports(
        self, newest: Newest, chosen: list[tuple[str, ImportUri]]
    ) -> tuple[list[tuple[str, ImportUri, str]], list[PendingRecord], PermanentError | None]:
        """Start the chosen imports. A URI the API refuses as invalid falls back to STOW-RS of its files; a
        transient failure or a refusal that concerns every import (permissions, a missing store) stops here and
        the rest wait (the refusal is raised once the started imports are recorded)."""
        started: list[tuple[str, ImportUri, str]] = []
        refused: list[PendingRecord] = []
        for index, (bucket, item) in enumerate(chosen):
            try:
                operation = self.healthcare.start_import(item.uri, self.settings.blob_storage_class)
            except InvalidRequestError as exc:
                log.error(
                    "import refused as invalid; its files go by STOW-RS", extra=fields(uri=item.uri, error=str(exc))
                )
                refused.extend(newest.record(bucket, name) for name in item.files)
                continue
            except (RetryableError, PermanentError) as exc:
                self._wait([newest.record(b, n).key for b, i in chosen[index:] for n in i.files])
                log.warning("import could not start; its files wait", extra=fields(uri=item.uri, error=str(exc)))
                return started, refused, exc if isinstance(exc, PermanentError) else None
            started.append((bucket, item, operation))
            self.report.imports_started += 1
            self.report.imported_files += len(item.files)
            self.report.operations.append(operation)
            log.info("import started", extra=fields(batch_id=self.report.batch_id, operation=operation,
                                                    uri=item.uri, files=len(item.files)))  # fmt: skip
        return started, refused, None

    def _stow(self, records: list[PendingRecord]) -> list[PendingRecord]:
        """STOW-RS the files no started import covers; refusals go to dicom-failed, transient failures wait.
        Returns the records settled here (stored or reported)."""
        settled: list[PendingRecord] = []
        for record in records:
            try:
                result = self.healthcare.stow(self.store.read(record.bucket, record.name, record.generation))
                reason = result.reason if not result.stored else None
            except ObjectGoneError:
                reason = "object no longer exists"
            except RetryableError as exc:
                self._wait([record.key])
                log.warning(
                    "STOW-RS failed transiently; the file waits", extra=fields(object=record.name, error=str(exc))
                )
                continue
            except PermanentError as exc:
                reason = f"STOW-RS refused the file: {exc}"
            if reason is None:
                self.report.stowed += 1
            else:
                self._fail(record, reason)
            settled.append(record)
            log.info("file sent with STOW-RS",
                     extra=fields(batch_id=self.report.batch_id, object=record.name, ok=reason is None))  # fmt: skip
        return settled

    def _fail(self, record: PendingRecord, reason: str) -> None:
        failed = FailedFile(record.bucket, record.name, record.generation, reason, Stage.STOW, record.attempt,
                            self.report.batch_id)  # fmt: skip
        self.publisher.publish(self.settings.failed_topic, [(failed.to_json(), failed.attributes())])
        self.report.failed += 1

    def _record(self, newest: Newest, started: list[tuple[str, ImportUri, str]], stowed: list[PendingRecord]) -> None:
        """Write the batch to the ledger, publish one watch per import, then settle the batch's records."""
        assert self.report.batch_id is not None
        files = [ManifestFile(newest.record(bucket, n), item.uri) for bucket, item, _ in started for n in item.files]
        files += [ManifestFile(record, VIA_STOW) for record in stowed]
        self.report.duplicates = len(newest.superseded)
        manifest = Manifest(
            batch_id=self.report.batch_id, created=self.now.isoformat(), store=self.healthcare.store_name,
            imports=tuple(ImportEntry(item.uri, operation, len(item.files)) for _, item, operation in started),
            files=tuple(files), stowed=self.report.stowed, failed=self.report.failed,
            duplicates=self.report.duplicates, listing_calls=self.report.listing_calls,
            overshoot=self.report.overshoot,
        )  # fmt: skip
        self.report.manifest_uri = self.ledger.create(manifest)
        watches = [
            (WatchMessage(operation, manifest.batch_id, self.report.manifest_uri, WatchKind.IMPORT).to_json(),
             {"batch_id": manifest.batch_id, "kind": WatchKind.IMPORT.value})
            for _, _, operation in started
        ]  # fmt: skip
        if watches:
            self.publisher.publish(self.settings.operations_topic, watches)
        self.held.done([f.record.key for f in files])
        self.held.done(newest.superseded)

    def _wait(self, keys: list[Key]) -> None:
        """These records go back for a later flush."""
        self.held.give_back(keys)
        self.report.deferred += len(keys)

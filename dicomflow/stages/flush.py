"""Flush: pull pending records, let folders settle, plan in-place imports, stage the rest, start at most two
imports per batch (STAGING=auto), record the batch, publish watches, ack. ``run_flush`` is one such pass;
``run_flush_for`` repeats it for most of a scheduler tick, so imports start as folders settle, not per tick.

Order matters for "nothing is lost": a record is acknowledged only after the import covering it was accepted
by the API, the batch was written to the ledger and the watch message was published. A crash anywhere before
that leaves the record unacknowledged, so a later tick repeats the work; the store ignores duplicates.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from dicomflow.batching.held import Held, Key, leased
from dicomflow.batching.planner import ImportUri, Plan, plan_buckets
from dicomflow.batching.poison import dead_letter
from dicomflow.batching.selection import (
    Newest,
    allocate,
    batch_id_for,
    newest_generations,
    ready_keys,
    seconds_until_ready,
    skipped_to_retire,
)
from dicomflow.batching.staging import StagingArea, delete_copies, stage
from dicomflow.config.routes import Route
from dicomflow.config.settings import Settings
from dicomflow.errors import InvalidRequestError, PermanentError, RetryableError
from dicomflow.ledger.failures import failure_notes, report_failed
from dicomflow.ledger.manifest import FailureNote, ImportEntry, Manifest, ManifestFile
from dicomflow.ledger.store import BatchLedger
from dicomflow.logs import fields
from dicomflow.messages.records import FailedFile, PendingRecord, Stage, WatchKind, WatchMessage, instant
from dicomflow.ports import HealthcareApi, ObjectStore, Publisher, Subscriber
from dicomflow.retry import RetryPolicy

log = logging.getLogger(__name__)


@dataclass
class FlushReport:
    """What one flush did; logged as one line and returned to tests and benchmarks."""

    batch_id: str | None = None  # the last batch formed (one per route with ready files)
    batch_ids: list[str] = field(default_factory=list)
    pulled: int = 0
    malformed: int = 0
    redelivered: int = 0
    duplicates: int = 0
    deferred: int = 0
    running_before: int = 0
    imports_started: int = 0
    imported_files: int = 0
    copies: int = 0
    failed: int = 0
    skipped: int = 0  # DICOMDIRs counted in this pass's batches
    listing_calls: int = 0
    overshoot: int = 0
    plan_seconds: float = 0.0
    stage_seconds: float = 0.0
    next_ready_seconds: float | None = None  # until the first folder that is still settling is ready
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
    stores: Callable[[str], HealthcareApi] | None = None,
) -> FlushReport:
    """One flush pass: one batch per route with ready files. ``stores`` gives the API of each route's store
    (default: ``healthcare`` for every store). Raises RetryableError when it could not finish (its records
    come back later)."""
    report = FlushReport()
    subscription = settings.pending_subscription
    # pulling ends well within the ack deadline of what it pulled first (the subscription's, kept at the lease):
    # the lease that takes over from it starts only once the pull returns
    messages = subscriber.pull(subscription, settings.max_batch_files, max_seconds=settings.flush_lease_seconds / 3)
    report.pulled = len(messages)
    if not messages:
        return report
    held = Held.from_messages(messages, refuse=lambda record: settings.refuses(record.bucket, record.name))
    report.malformed, report.redelivered = held.malformed, held.redelivered
    ledger = BatchLedger(store, settings.state_bucket, settings.state_prefix, now=now)
    api = stores or (lambda _store: healthcare)
    started = now()
    try:
        with leased(subscriber, subscription, [m.ack_id for m in messages], settings.flush_lease_seconds):
            _settle_poison(settings, held, publisher, store)
            problems: list[PermanentError] = []
            for route, records in _ready_by_route(settings, held, report, started).items():
                batch = _Batch(settings, held, report, ledger, publisher, store, api(route.store), started, route)
                try:
                    batch.run(records)
                except PermanentError as exc:  # this route's store refused; the other routes go on
                    problems.append(exc)
            _retire_skipped(settings, held, started)
            if problems:
                raise problems[0]
    finally:  # every record not settled explicitly comes back, whatever happened
        held.settle(subscriber, subscription)
    log.info("flush finished", extra=fields(**{k: v for k, v in asdict(report).items() if k != "operations"}))
    return report


MIN_PAUSE = 0.5  # seconds between passes at least (never a busy loop)
MAX_PAUSE = 5.0  # at most: records that reach the subscription late are seen within this long


@dataclass
class FlushRun:
    """What one invocation did: every pass, and how long it worked."""

    passes: list[FlushReport] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def batches(self) -> list[str]:
        return [r.batch_id for r in self.passes if r.batch_id is not None]


def run_flush_for(
    settings: Settings,
    *,
    subscriber: Subscriber,
    publisher: Publisher,
    store: ObjectStore,
    healthcare: HealthcareApi,
    now: Callable[[], datetime] = utc_now,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    stores: Callable[[str], HealthcareApi] | None = None,
) -> FlushRun:
    """One scheduler tick: passes of ``run_flush`` for ``settings.flush_run_seconds`` (0: one pass).

    Between passes it sleeps until the next folder it holds settles (``pause_after``), so a folder's import
    starts within a pass of becoming ready, not at the next tick. It starts no pass that, as long as the longest
    so far, would end after the deadline (it shortens the last pause instead), so the invocation hands over
    before the next tick. A transient failure of one pass is logged and the next pass tries again (raised only
    when the last pass failed); a permanent one (a denied permission, a missing store) ends the run at once.
    """
    started = clock()
    deadline = started + settings.flush_run_seconds
    run, longest, failure = FlushRun(), 0.0, None
    while True:
        began = clock()
        try:
            report = run_flush(settings, subscriber=subscriber, publisher=publisher, store=store,
                               healthcare=healthcare, now=now, stores=stores)  # fmt: skip
            run.passes.append(report)
            pause, failure = pause_after(report, settings), None
        except RetryableError as exc:
            log.warning("flush pass failed transiently; the next pass retries", extra=fields(error=str(exc)))
            pause, failure = MAX_PAUSE, exc
        longest = max(longest, clock() - began)
        room = deadline - clock() - longest  # a pass as long as the longest must still end by the deadline
        if room <= 0:
            break
        sleep(min(pause, room))
    run.seconds = round(clock() - started, 3)
    log.info("flush run finished", extra=fields(passes=len(run.passes), batches=len(run.batches),
                                                 seconds=run.seconds))  # fmt: skip
    if failure is not None:
        raise failure
    return run


def pause_after(report: FlushReport, settings: Settings) -> float:
    """Seconds to wait before the next pass: none after a full batch (more may be waiting); until the first
    folder still settling is ready; else ``SETTLE_SECONDS`` (a folder seen later cannot be ready sooner) --
    always between MIN_PAUSE and MAX_PAUSE."""
    if report.pulled >= settings.max_batch_files:
        return 0.0
    wait = report.next_ready_seconds if report.next_ready_seconds is not None else settings.settle_seconds
    return min(max(wait, MIN_PAUSE), MAX_PAUSE)


def _ready_by_route(
    settings: Settings, held: Held, report: FlushReport, now: datetime
) -> dict[Route, list[PendingRecord]]:
    """The ready records by route (a batch never mixes routes); the others go back for a later flush."""
    records = list(held.records.values())
    ready = ready_keys(
        records, settle_seconds=settings.settle_seconds, max_wait_seconds=settings.max_wait_seconds,
        now=now, batch_full=report.pulled >= settings.max_batch_files, markers=held.markers,
    )  # fmt: skip
    limit = settings.max_wait_seconds
    held.markers_done([m for m in held.markers if (now - instant(m.event_time, now)).total_seconds() >= limit])
    settling = [r for r in records if r.key not in ready]
    report.next_ready_seconds = seconds_until_ready(
        settling, settle_seconds=settings.settle_seconds, max_wait_seconds=settings.max_wait_seconds, now=now
    )
    held.give_back([r.key for r in settling])
    report.deferred += len(settling)
    by_route: dict[Route, list[PendingRecord]] = {}
    for key in sorted(ready):
        record = held.records[key]
        by_route.setdefault(settings.route_for(record.bucket, record.name), []).append(record)
    return by_route


def _settle_poison(settings: Settings, held: Held, publisher: Publisher, store: ObjectStore) -> None:
    """Dead-letter the messages this pass can never process, then acknowledge them; when that fails for now
    they are handed back (the good records beside them go on either way)."""
    poison = list(held.poison)
    try:
        dead_letter(poison, settings, publisher, store, subscription=settings.pending_subscription)
    except (RetryableError, PermanentError) as exc:
        log.warning("poison messages not dead-lettered yet; they come back", extra=fields(error=str(exc)))
        return
    held.poison_done(poison)


def _retire_skipped(settings: Settings, held: Held, now: datetime) -> None:
    """Acknowledge the skipped DICOMDIRs no batch will count (no file of their file-set pending after
    MAX_WAIT_SECONDS); the others wait for the batch that takes their files."""
    retire = skipped_to_retire(held.skipped, list(held.records.values()), max_wait_seconds=settings.max_wait_seconds,
                               now=now)  # fmt: skip
    for entry in retire:
        where = fields(bucket=entry.bucket, object=entry.name, generation=entry.generation)
        log.debug("DICOMDIR counted in no batch result: no file of its file-set is pending", extra=where)
    held.skipped_done(retire)


@dataclass
class _Batch:
    """The sequence of one flush for one route: the batch of its ready records."""

    settings: Settings
    held: Held
    report: FlushReport
    ledger: BatchLedger
    publisher: Publisher
    store: ObjectStore
    healthcare: HealthcareApi  # the route's store
    now: datetime
    route: Route
    staged_names: int = 0  # staging names used so far (each copy gets its own)
    failures: list[FailureNote] = field(default_factory=list)  # files of the batch settled on dicom-failed

    def run(self, records: list[PendingRecord]) -> None:
        settings, report = self.settings, self.report
        running = self.ledger.imports_in_flight(self.healthcare.store_name, settings.operation_max_age_seconds)
        report.running_before += running
        newest = newest_generations(records)
        planned = time.monotonic()
        slots = max(0, settings.max_concurrent_operations - running)
        allocation = allocate(self._plan(newest), slots=slots, staging=settings.staging)
        report.plan_seconds = round(time.monotonic() - planned, 3)
        self._wait([newest.record(b, n).key for b, n in allocation.waiting])
        in_place = [(item, [newest.record(b, n) for n in item.files]) for b, item in allocation.in_place]
        to_stage = [newest.record(b, n) for b, n in allocation.staged]
        batch_keys = [r.key for _, members in in_place for r in members] + [r.key for r in to_stage]
        if not batch_keys:
            self._wait(newest.superseded)
            log.info("no capacity for new imports; records wait", extra=fields(running=running, route=self.route.name))
            return
        report.batch_id = batch_id_for(self.now, batch_keys)
        report.batch_ids.append(report.batch_id)
        self._run_batch(newest, in_place, to_stage)

    def _run_batch(
        self, newest: Newest, in_place: list[tuple[ImportUri, list[PendingRecord]]], to_stage: list[PendingRecord]
    ) -> None:
        """Stage, start the imports, record the batch; a refusal that concerns every import is raised after."""
        assert self.report.batch_id is not None
        area = StagingArea.of(self.settings.state_bucket, self.settings.state_prefix, self.report.batch_id)
        files = self._stage(area, to_stage)
        started: list[tuple[ImportUri, str]] = []
        problem: PermanentError | None = None
        for index, (item, members) in enumerate(in_place):
            outcome = self._start(item.uri, members)
            if isinstance(outcome, str):
                started.append((item, outcome))
                files += [ManifestFile(r, item.uri) for r in members]
            elif isinstance(outcome, InvalidRequestError):  # the API cannot read this URI: stage its files too
                files += self._stage(area, members)
            else:
                self._wait([r.key for _, rest in in_place[index:] for r in rest])
                problem = outcome
                break
        copies = [f for f in files if f.staged]
        if copies:
            outcome = self._start(area.import_uri, [f.record for f in copies])
            if isinstance(outcome, str):
                started.append((ImportUri(area.import_uri, tuple(f.record.name for f in copies)), outcome))
            else:
                self._wait([f.record.key for f in copies])
                files = [f for f in files if not f.staged]
                delete_copies(self.store, (f.staged for f in copies if f.staged))
                problem = problem or outcome
        if started:
            self._record(newest, started, files)
        else:
            self._wait(newest.superseded)
        if problem is not None:
            raise problem

    # ----- plan -----

    def _plan(self, newest: Newest) -> list[Plan]:
        """The in-place URIs of every bucket (only whole new subtrees unless STAGING=never) and what is left."""
        plans = plan_buckets(newest.by_bucket, self.store, staging=self.settings.staging,
                             listing_cap=self.settings.listing_cap)  # fmt: skip
        self.report.listing_calls += sum(p.listing_calls for p in plans)
        self.report.overshoot += sum(p.overshoot for p in plans)
        return plans

    # ----- effects -----

    def _stage(self, area: StagingArea, records: list[PendingRecord]) -> list[ManifestFile]:
        """Copy ``records`` into the batch's staging area; gone sources are settled, failed copies wait."""
        if not records:
            return []
        began = time.monotonic()
        staged = stage(self.store, area, records, RetryPolicy(attempts=self.settings.api_retry_attempts),
                       first_index=self.staged_names)  # fmt: skip
        self.staged_names += len(records)
        self.report.stage_seconds = round(self.report.stage_seconds + time.monotonic() - began, 3)
        self.report.copies += len(staged.copies)
        self._wait([r.key for r in staged.failed])
        for record in staged.gone:
            self._fail(record, f"generation {record.generation} was deleted or replaced before it could be imported")
        self.held.done([r.key for r in staged.gone])
        self._refused(staged.refused)
        return [ManifestFile(r, area.import_uri, uri) for r, uri in staged.copies.items()]

    def _refused(self, refused: dict[PendingRecord, PermanentError]) -> None:
        """Copies refused for good (403, 400) wait for a later flush until refused MAX_ATTEMPTS times, then the
        file is reported on dicom-failed (stage staging) with the API's reason, once: a failure note already
        written for it (a crash before the ack) settles it without a second report."""
        notes = failure_notes(self.settings, self.store)
        for record, error in refused.items():
            attempts = self.ledger.note_refusal(record)
            if attempts < self.settings.max_attempts:
                self._wait([record.key])
                continue
            noted = notes.read(record.bucket, record.name, record.generation)
            if noted is None or noted.stage != Stage.STAGING:
                self._fail(record, f"copy into staging refused {attempts} times: {error}", Stage.STAGING)
            self.held.done([record.key])
            self.ledger.clear_refusal(record)

    def _start(self, uri: str, records: list[PendingRecord]) -> str | PermanentError | None:
        """Start one import: its operation name, or why not (None: a transient failure; the files wait)."""
        try:
            operation = self.healthcare.start_import(uri, self.route.storage_class)
        except RetryableError as exc:
            log.warning("import could not start; its files wait", extra=fields(uri=uri, error=str(exc)))
            return None
        except PermanentError as exc:
            log.error("import refused", extra=fields(uri=uri, status=exc.status, error=str(exc)))
            return exc
        self.report.imports_started += 1
        self.report.imported_files += len(records)
        self.report.operations.append(operation)
        log.info("import started", extra=fields(batch_id=self.report.batch_id, operation=operation, uri=uri,
                                                files=len(records)))  # fmt: skip
        return operation

    def _fail(self, record: PendingRecord, reason: str, stage: Stage = Stage.DELETED) -> None:
        failed = FailedFile(record.bucket, record.name, record.generation, reason, stage, record.attempt,
                            self.report.batch_id)  # fmt: skip
        report_failed([failed], self.settings, self.publisher, self.store)
        self.failures.append(FailureNote.of(failed))
        self.report.failed += 1

    def _record(self, newest: Newest, started: list[tuple[ImportUri, str]], files: list[ManifestFile]) -> None:
        """Write the batch's manifest, publish one watch per import, mark the imports in flight, then settle the
        batch's records (a failed publish raises: the records come back, no in-flight mark outlives it)."""
        assert self.report.batch_id is not None
        self.report.duplicates = len(newest.superseded)
        skipped = [s for s in self.held.skipped if any(s.covers(f.record) for f in files)]  # counted once: acked
        self.report.skipped += len({(s.bucket, s.name) for s in skipped})
        manifest = Manifest(
            batch_id=self.report.batch_id, created=self.now.isoformat(), store=self.healthcare.store_name,
            route=self.route.name,
            imports=tuple(ImportEntry(item.uri, operation, len(item.files)) for item, operation in started),
            files=tuple(files), failures=tuple(self.failures), duplicates=self.report.duplicates,
            listing_calls=self.report.listing_calls, overshoot=self.report.overshoot,
            skipped=tuple(sorted({f"gs://{s.bucket}/{s.name}" for s in skipped})),
        )  # fmt: skip
        self.report.manifest_uri = self.ledger.write_manifest(manifest)
        watches = [
            (WatchMessage(operation, manifest.batch_id, self.report.manifest_uri, WatchKind.IMPORT).to_json(),
             {"batch_id": manifest.batch_id, "kind": WatchKind.IMPORT.value})
            for _, operation in started
        ]  # fmt: skip
        self.publisher.publish(self.settings.operations_topic, watches)
        self.ledger.mark_in_flight(manifest)  # after the watches: a failed publish leaves no slot held for hours
        self.held.done([f.record.key for f in files])
        self.held.done(newest.superseded)
        used = [m for m in self.held.markers if any(m.covers(f.record) for f in files)]
        self.held.markers_done(used)  # the marked folder's files are in this batch: the marker did its work
        self.held.skipped_done(skipped)

    def _wait(self, keys: list[Key]) -> None:
        """These records go back for a later flush."""
        self.held.give_back(keys)
        self.report.deferred += len(keys)

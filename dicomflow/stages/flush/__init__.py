"""Flush: pull pending records, let folders settle, plan in-place imports, stage the rest, start at most two
imports per batch (STAGING=auto), record the batch, publish watches, ack. ``run_flush`` is one such pass;
``run_flush_for`` repeats it for most of a scheduler tick, so imports start as folders settle, not per tick.

Order matters for "nothing is lost": a record is acknowledged only after the import covering it was accepted
by the API, the batch was written to the ledger and the watch message was published. A crash anywhere before
that leaves the record unacknowledged, so a later tick repeats the work; the store ignores duplicates.

This module is the sequence; a batch's steps live beside it in the package: the state they share and the pass's
report in ``batch``, plan and stage in ``plan``, start in ``start``, record and watch in ``record``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from dicomflow.batching.held import Held, leased
from dicomflow.batching.planner import ImportUri
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
from dicomflow.batching.staging import StagingArea, delete_copies
from dicomflow.config.routes import Route
from dicomflow.config.settings import Settings
from dicomflow.errors import InvalidRequestError, PermanentError, RetryableError
from dicomflow.ledger.manifest import ManifestFile
from dicomflow.ledger.store import BatchLedger
from dicomflow.logs import fields
from dicomflow.messages.records import PendingRecord, instant
from dicomflow.ports import HealthcareApi, ObjectStore, Publisher, Subscriber
from dicomflow.stages.flush.batch import Batch, FlushReport
from dicomflow.stages.flush.plan import Copier, plan
from dicomflow.stages.flush.record import record_batch
from dicomflow.stages.flush.start import start_import

__all__ = ["MAX_PAUSE", "MIN_PAUSE", "FlushReport", "FlushRun", "pause_after", "run_flush", "run_flush_for", "utc_now"]

log = logging.getLogger(__name__)


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
                batch = Batch(settings, held, report, ledger, publisher, store, api(route.store), started, route)
                try:
                    _flush_batch(batch, records)
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


def _flush_batch(batch: Batch, records: list[PendingRecord]) -> None:
    """The sequence of one flush for one route: the batch of its ready records."""
    settings, report = batch.settings, batch.report
    running = batch.ledger.imports_in_flight(batch.healthcare.store_name, settings.operation_max_age_seconds)
    report.running_before += running
    newest = newest_generations(records)
    planned = time.monotonic()
    slots = max(0, settings.max_concurrent_operations - running)
    allocation = allocate(plan(batch, newest), slots=slots, staging=settings.staging)
    report.plan_seconds = round(time.monotonic() - planned, 3)
    batch.wait([newest.record(b, n).key for b, n in allocation.waiting])
    in_place = [(item, [newest.record(b, n) for n in item.files]) for b, item in allocation.in_place]
    to_stage = [newest.record(b, n) for b, n in allocation.staged]
    batch_keys = [r.key for _, members in in_place for r in members] + [r.key for r in to_stage]
    if not batch_keys:
        batch.wait(newest.superseded)
        log.info("no capacity for new imports; records wait", extra=fields(running=running, route=batch.route.name))
        return
    report.batch_id = batch_id_for(batch.now, batch_keys)
    report.batch_ids.append(report.batch_id)
    _import_batch(batch, newest, in_place, to_stage)


def _import_batch(
    batch: Batch, newest: Newest, in_place: list[tuple[ImportUri, list[PendingRecord]]], to_stage: list[PendingRecord]
) -> None:
    """Stage, start the imports, record the batch; a refusal that concerns every import is raised after."""
    assert batch.report.batch_id is not None
    area = StagingArea.of(batch.settings.state_bucket, batch.settings.state_prefix, batch.report.batch_id)
    copier = Copier(batch, area)
    files = copier.stage(to_stage)
    started: list[tuple[ImportUri, str]] = []
    problem: PermanentError | None = None
    for index, (item, members) in enumerate(in_place):
        outcome = start_import(batch, item.uri, members)
        if isinstance(outcome, str):
            started.append((item, outcome))
            files += [ManifestFile(r, item.uri) for r in members]
        elif isinstance(outcome, InvalidRequestError):  # the API cannot read this URI: stage its files too
            files += copier.stage(members)
        else:
            batch.wait([r.key for _, rest in in_place[index:] for r in rest])
            problem = outcome
            break
    copies = [f for f in files if f.staged]
    if copies:
        outcome = start_import(batch, area.import_uri, [f.record for f in copies])
        if isinstance(outcome, str):
            started.append((ImportUri(area.import_uri, tuple(f.record.name for f in copies)), outcome))
        else:
            batch.wait([f.record.key for f in copies])
            files = [f for f in files if not f.staged]
            delete_copies(batch.store, (f.staged for f in copies if f.staged))
            problem = problem or outcome
    if started:
        record_batch(batch, newest, started, files)
    else:
        batch.wait(newest.superseded)
    if problem is not None:
        raise problem

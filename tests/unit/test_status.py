"""``dicomflow status`` with in-memory fakes: the skipped DICOMDIRs of a batch, the peek at pending messages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dicomflow.cli import status
from dicomflow.cli.context import Context
from dicomflow.cli.status import collect, render
from dicomflow.config.settings import Settings
from dicomflow.ledger.failures import failure_notes
from dicomflow.ledger.manifest import FailureNote, ImportEntry, Manifest, ManifestFile
from dicomflow.ledger.store import BatchLedger
from dicomflow.messages.records import FailedFile, PendingRecord, ReadyMarker, SkippedFile, Stage
from tests.fakes.services import FakeHealthcare, FakePublisher, FakeStore, FakeSubscriber

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
SETTINGS = Settings(project_id="p", location="l", dataset="d", dicom_store="s", source_buckets=("src",),
                    state_bucket="state")  # fmt: skip


def _record(name: str, age_seconds: float) -> PendingRecord:
    return PendingRecord("src", name, "1", 10, None, "1.1", "1.1.1", f"1.1.1.{len(name)}", "1.2.840.10008.1.2.1",
                         "CT", (NOW - timedelta(seconds=age_seconds)).isoformat())  # fmt: skip


def _context(store: FakeStore, subscriber: FakeSubscriber) -> Context:
    healthcare = FakeHealthcare()
    ledger = BatchLedger(store, "state", SETTINGS.state_prefix, now=lambda: NOW)
    return Context(SETTINGS, store, FakePublisher(), subscriber, healthcare, lambda _store: healthcare, ledger,
                   lambda: NOW)  # fmt: skip


def test_status_shows_the_skipped_dicomdirs_of_a_batch() -> None:
    store = FakeStore()
    ctx = _context(store, FakeSubscriber())
    files = (ManifestFile(_record("cd/SE1/IM1", 60), "gs://src/cd/**"),)
    ctx.ledger.create(Manifest("20261203T115900Z-abc", NOW.isoformat(), FakeHealthcare().store_name,
                               (ImportEntry("gs://src/cd/**", "op/1", 1),), files,
                               skipped=("gs://src/cd/DICOMDIR",)))  # fmt: skip
    report = collect(ctx, peek=False)
    [batch] = report["batches"]
    assert (batch["files"], batch["skipped"]) == (1, 1)
    header, _, row = render(report).split("Batches (1 of 1)\n")[1].splitlines()[:3]
    assert header.split()[:10] == ["batch", "route", "outcome", "files", "imported", "duplicates", "failed",
                                   "redriven", "skipped", "copies"]  # fmt: skip
    assert row[header.index("skipped") :].split()[0] == "1"  # the cell under the header ("in progress" has a space)


def test_status_counts_the_older_generations_a_batch_took_as_duplicates() -> None:
    # GIVEN a batch that imported one file and took an older generation of it (the overwrite came first)
    store = FakeStore()
    ctx = _context(store, FakeSubscriber())
    files = (ManifestFile(_record("st/IM1", 60), "gs://src/st/**"),)
    ctx.ledger.create(Manifest("20261203T115900Z-dup", NOW.isoformat(), FakeHealthcare().store_name,
                               (ImportEntry("gs://src/st/**", "op/1", 1),), files, duplicates=1))  # fmt: skip
    # WHEN status reports it THEN files = imported + duplicates + failed + redriven can be read off the row
    report = collect(ctx, peek=False)
    [batch] = report["batches"]
    assert (batch["files"], batch["duplicates"], batch["failed"], batch["redriven"]) == (2, 1, 0, 0)
    header, _, row = render(report).split("Batches (1 of 1)\n")[1].splitlines()[:3]
    assert row[header.index("duplicates") :].split()[0] == "1"


def test_status_peeks_at_records_only_and_gives_every_message_back() -> None:
    # GIVEN a record, a skipped DICOMDIR and a ready marker pending, the two notes older than the record
    subscriber = FakeSubscriber()
    subscriber.put(SkippedFile("src", "cd/DICOMDIR", "1", (NOW - timedelta(hours=2)).isoformat()).to_json())
    subscriber.put(ReadyMarker("src", "st/", (NOW - timedelta(hours=1)).isoformat()).to_json())
    subscriber.put(_record("cd/SE1/IM1", 90).to_json())
    # WHEN status peeks THEN the oldest pending record is the record's age; nothing is acknowledged
    pending = collect(_context(FakeStore(), subscriber))["oldest_pending"]
    assert (pending["peeked"], pending["age_seconds"]) == (3, 90.0)
    assert len(subscriber.available) == 3 and subscriber.acked == []


def _batches(ctx: Context, ages: list[timedelta]) -> None:
    for index, age in enumerate(ages):
        created = NOW - age
        uri = f"gs://src/b{index}/**"
        files = (ManifestFile(_record(f"b{index}/IM1", 60), uri),)
        entries = (ImportEntry(uri, f"op/{index}", 1),)
        batch_id = f"{created:%Y%m%dT%H%M%SZ}-{index:04d}"
        ctx.ledger.create(Manifest(batch_id, created.isoformat(), FakeHealthcare().store_name, entries, files))


def test_status_shows_the_last_batches_listing_back_only_as_far_as_it_needs() -> None:
    # GIVEN 25 batches in the last hours and 30 from last week
    ctx = _context(FakeStore(), FakeSubscriber())
    _batches(ctx, [timedelta(days=7, minutes=i) for i in range(30)] + [timedelta(minutes=5 * i) for i in range(25)])
    # WHEN status runs THEN it shows the newest 20 of the 25 the last day holds, and says since when it listed
    report = collect(ctx, peek=False)
    assert (len(report["batches"]), report["batches_total"]) == (20, 25)
    assert report["batches"][-1]["batch_id"] == f"{NOW:%Y%m%dT%H%M%SZ}-0030"  # age 0
    assert "Batches (20 of 25 since 2026-12-02 12:00 UTC)" in render(report)


def test_status_lists_further_back_when_the_last_day_holds_fewer_batches() -> None:
    ctx = _context(FakeStore(), FakeSubscriber())
    _batches(ctx, [timedelta(days=60)] + [timedelta(days=7, minutes=i) for i in range(30)] + [timedelta(hours=1)])
    report = collect(ctx, peek=False)
    assert (len(report["batches"]), report["batches_total"]) == (20, 31)  # the month; the 60-day-old one unlisted
    assert report["listed_since"] == (NOW - timedelta(days=30)).isoformat()
    everything = collect(ctx, since=90 * 86400, peek=False)
    assert everything["batches_total"] == 32 and len(everything["batches"]) == 32


def test_failures_by_reason_count_intake_failures_and_each_batch_failure_once() -> None:
    # GIVEN two files reported at intake (no batch) and a batch whose failure was also noted
    ctx = _context(FakeStore(), FakeSubscriber())
    notes = failure_notes(SETTINGS, ctx.store)
    for name in ("in/a.dcm", "in/b.dcm"):
        notes.remember(FailedFile("src", name, "3", "not a DICOM Part 10 file: no 'DICM' prefix", Stage.INTAKE))
    gone = FailedFile("src", "b0/IM2", "1796289857118795",
                      "generation 1796289857118795 was deleted or replaced before it could be imported",
                      Stage.DELETED, batch_id="20261203T115900Z-f")  # fmt: skip
    notes.remember(gone)
    files = (ManifestFile(_record("b0/IM1", 60), "gs://src/b0/**"),)
    ctx.ledger.create(Manifest("20261203T115900Z-f", NOW.isoformat(), FakeHealthcare().store_name,
                               (ImportEntry("gs://src/b0/**", "op/1", 1),), files,
                               failures=(FailureNote.of(gone),)))  # fmt: skip
    # WHEN status runs THEN both stages are there, each file counted once
    report = collect(ctx, peek=False)
    by_stage = {f["stage"]: f["files"] for f in report["failures"]}
    assert by_stage == {"intake": 2, "deleted": 1}
    reasons = {f["stage"]: f["reason"] for f in report["failures"]}  # per-file numbers out, meaningful ones kept
    assert reasons["intake"] == "not a DICOM Part 10 file: no 'DICM' prefix"
    assert reasons["deleted"] == "generation N was deleted or replaced before it could be imported"
    assert report["failure_notes"] == {"listed": 3, "read": 3}
    assert "Failures by reason\n" in render(report)  # all were read: no "newest N of M"


def test_status_reads_only_the_newest_failure_notes_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = _context(FakeStore(), FakeSubscriber())
    notes = failure_notes(SETTINGS, ctx.store)
    for index in (2, 0, 1):  # written in this order (the fake store's clock gives each a later time)
        notes.remember(FailedFile("src", f"in/{index}.dcm", "3", f"reason written {index}", Stage.INTAKE))
    monkeypatch.setattr(status, "_NOTES", 2)
    report = collect(ctx, peek=False)
    assert report["failure_notes"] == {"listed": 3, "read": 2}
    assert sorted(f["reason"] for f in report["failures"]) == ["reason written 0", "reason written 1"]  # newest 2
    assert "Failures by reason (the newest 2 of 3 files reported failed)" in render(report)

"""The batch ledger: one JSON form per record, claims that hold once, in-flight imports from our own records."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from dicomflow.errors import MalformedEventError, PermanentError
from dicomflow.ledger.manifest import (
    ExportMarker,
    ExportOutcome,
    ExportStatus,
    ImportEntry,
    ImportMarker,
    Manifest,
    ManifestFile,
)
from dicomflow.ledger.store import BatchLedger
from dicomflow.messages.records import PendingRecord
from tests.fakes.services import FakeStore

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
STORE = "projects/p/locations/l/datasets/d/dicomStores/s"


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def _manifest(batch_id: str = "B1", operations: int = 2, created: datetime = NOW) -> Manifest:
    record = PendingRecord("src", "up/a.dcm", "7", 10, None, "1.1", "1.1.1", "1.1.1.1", "1.2.840.10008.1.2.1",
                           "CT", "2026-12-02T11:59:00+00:00")  # fmt: skip
    imports = tuple(ImportEntry(f"gs://src/up{i}/**", f"projects/p/operations/{batch_id}-{i}", 1)
                    for i in range(operations))  # fmt: skip
    return Manifest(batch_id, created.isoformat(), STORE, imports, (ManifestFile(record, imports[0].uri),))


def test_manifest_round_trips_through_its_one_json_form() -> None:
    # GIVEN a manifest written by the ledger WHEN it is read back THEN it is equal, with the documented keys
    store, clock = FakeStore(), Clock()
    ledger = BatchLedger(store, "state", "dicomflow/", now=clock)
    uri = ledger.create(_manifest())
    assert uri == "gs://state/dicomflow/batches/B1/manifest.json"
    assert ledger.open(uri) == _manifest()
    body = json.loads(store.objects[("state", "dicomflow/batches/B1/manifest.json")])
    assert body["counts"] == {"files": 1, "imports": 2, "copies": 0, "failed": 0, "skipped": 0}
    assert body["version"] == 1


def test_a_manifest_lists_its_skipped_dicomdirs_outside_its_files() -> None:
    manifest = replace(_manifest(), skipped=("gs://src/up/DICOMDIR",))
    body = manifest.to_dict()
    assert body["skipped"] == ["gs://src/up/DICOMDIR"] and body["counts"]["skipped"] == 1
    assert body["counts"]["files"] == 1 and Manifest.from_dict(body) == manifest


def test_a_manifest_written_before_skipped_dicomdirs_were_counted_reads_as_none_skipped() -> None:
    body = _manifest().to_dict()
    del body["skipped"], body["counts"]["skipped"]  # the version 1 form written before the field existed
    assert Manifest.from_dict(body).skipped == () and Manifest.from_dict(body) == _manifest()


def test_open_refuses_a_manifest_outside_the_ledger_or_gone() -> None:
    ledger = BatchLedger(FakeStore(), "state", "dicomflow/", now=Clock())
    with pytest.raises(PermanentError, match="is not a batch"):
        ledger.open("gs://elsewhere/dicomflow/batches/B1/manifest.json")
    with pytest.raises(PermanentError, match="does not exist"):
        ledger.open("gs://state/dicomflow/batches/B9/manifest.json")


def test_a_manifest_of_another_version_is_refused() -> None:
    body = {**_manifest().to_dict(), "version": 99}
    with pytest.raises(MalformedEventError, match="unsupported version 99"):
        Manifest.from_dict(body)


def test_imports_in_flight_counts_started_imports_until_each_is_reconciled() -> None:
    # GIVEN two batches with 2 + 1 imports of one store and 1 import of another store
    clock = Clock()
    ledger = BatchLedger(FakeStore(), "state", "dicomflow/", now=clock)
    first, second = _manifest("B1", 2), _manifest("B2", 1)
    ledger.create(first)
    ledger.create(second)
    ledger.create(Manifest("B3", NOW.isoformat(), STORE + "-other", (ImportEntry("gs://x/**", "op/o", 1),), ()))
    assert ledger.imports_in_flight(STORE, max_age=3600) == 3
    # WHEN one import is reconciled (twice: a redelivered watch) THEN it no longer counts, once
    marker = ImportMarker(first.imports[0].operation, NOW.isoformat())
    assert ledger.record_import(first, marker) is True
    assert ledger.record_import(first, marker) is False
    assert ledger.imports_in_flight(STORE, max_age=3600) == 2
    # AND imports older than the stuck limit stop counting (a lost watch cannot hold a slot for ever)
    clock.now = NOW + timedelta(hours=2)
    assert ledger.imports_in_flight(STORE, max_age=3600) == 0


def test_an_export_is_claimed_once_and_a_stale_claim_is_taken_over() -> None:
    clock = Clock()
    ledger = BatchLedger(FakeStore(), "state", "dicomflow/", now=clock, claim_timeout=300)
    claim = ledger.claim_export("B1", "png")
    assert claim is not None
    assert ledger.claim_export("B1", "png") is None  # another delivery, right now
    clock.now = NOW + timedelta(seconds=301)  # the claimer died before starting the export
    again = ledger.claim_export("B1", "png")
    assert again is not None
    assert ledger.complete_export(claim, ExportMarker("png", ExportStatus.RUNNING, operation="op")) is False
    assert ledger.complete_export(again, ExportMarker("png", ExportStatus.RUNNING, operation="op")) is True
    marker, generation = ledger.export_marker("B1", "png") or (None, 0)
    assert marker is not None and marker.status is ExportStatus.RUNNING
    done = marker.done(ExportOutcome.SUCCEEDED, NOW.isoformat())
    assert ledger.complete_export(ledger.export_claim("B1", "png", generation), done)
    clock.now = NOW + timedelta(days=1)
    assert ledger.claim_export("B1", "png") is None  # done is final


def test_the_result_is_claimed_once_and_keeps_its_summary() -> None:
    ledger = BatchLedger(FakeStore(), "state", "dicomflow/", now=Clock())
    claim = ledger.claim_result("B1")
    assert claim is not None and ledger.claim_result("B1") is None
    assert ledger.complete_result(claim, {"outcome": "success", "files": 3})
    result = ledger.result("B1")
    assert result is not None and result.summary == {"outcome": "success", "files": 3}
    assert ledger.claim_result("B1") is None


def test_list_batches_returns_batch_ids_oldest_first() -> None:
    ledger = BatchLedger(FakeStore(), "state", "dicomflow/", now=Clock())
    for batch_id in ("20261202T120500Z-bb", "20261202T120000Z-aa"):
        ledger.create(_manifest(batch_id, 1))
    ledger.write_filter("20261202T120000Z-aa", ["/studies/1"])
    assert ledger.list_batches() == ["20261202T120000Z-aa", "20261202T120500Z-bb"]


def test_list_batches_since_starts_the_listing_at_that_time() -> None:
    store = FakeStore()
    ledger = BatchLedger(store, "state", "dicomflow/", now=Clock())
    for batch_id in ("20261130T235959Z-old", "20261201T000000Z-edge", "20261202T120000Z-new"):
        ledger.create(_manifest(batch_id, 1))
    since = datetime(2026, 12, 1, tzinfo=UTC)
    assert ledger.list_batches(since) == ["20261201T000000Z-edge", "20261202T120000Z-new"]
    assert ledger.list_batches() == ["20261130T235959Z-old", "20261201T000000Z-edge", "20261202T120000Z-new"]

"""Reporting files that will not be imported, the same way from intake, the backfill, flush and the follow-up:
one message each on the failed topic (one publish call), then a note each in the state bucket (FailureNotes),
which the backfill and verify read instead of the whole ledger."""

from __future__ import annotations

from collections.abc import Sequence

from dicomflow.ledger import FailureNotes
from dicomflow.ports import ObjectStore, Publisher
from dicomflow.records import FailedFile
from dicomflow.settings import Settings


def failure_notes(settings: Settings, store: ObjectStore) -> FailureNotes:
    return FailureNotes(store, settings.state_bucket, settings.state_prefix)


def report_failed(failed: Sequence[FailedFile], settings: Settings, publisher: Publisher, store: ObjectStore) -> None:
    """Publish, then note: a crash in between leaves a report without its note (a backfill may report that file
    once more), never a note without a report."""
    if not failed:
        return
    publisher.publish(settings.failed_topic, [(f.to_json(), f.attributes()) for f in failed])
    notes = failure_notes(settings, store)
    for item in failed:
        notes.remember(item)

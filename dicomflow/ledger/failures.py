"""Reporting files that will not be imported, the same way from intake, the backfill, flush and the follow-up:
one message each on the failed topic (one publish call), then a note each in the state bucket,
``{STATE_PREFIX}failed/{KEY}/{GENERATION}.json`` (KEY a hash of bucket and name; the body a ledger FailureNote
with the generation). One listing of ``failed/`` tells a backfill which files were reported at which
generation (so it reports no unchanged bad file twice); verify and status read the notes instead of every
batch of the ledger."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from dicomflow.config.settings import Settings
from dicomflow.ledger.manifest import LEDGER_VERSION, FailureNote, check_version
from dicomflow.messages.records import FailedFile, instant
from dicomflow.pool import bounded
from dicomflow.ports import ObjectInfo, ObjectStore, Publisher

_UNREADABLE = datetime.min.replace(tzinfo=UTC)  # a note whose time cannot be read sorts oldest


def failure_notes(settings: Settings, store: ObjectStore) -> FailureNotes:
    return FailureNotes(store, settings.state_bucket, settings.state_prefix)


def report_failed(failed: Sequence[FailedFile], settings: Settings, publisher: Publisher, store: ObjectStore) -> None:
    """Publish, then note: a crash in between leaves a report without its note (a backfill may report that file
    once more), never a note without a report."""
    if not failed:
        return
    publisher.publish(settings.failed_topic, [(f.to_json(), f.attributes()) for f in failed])
    bounded(failure_notes(settings, store).remember, failed)  # a backfill chunk may hold many bad files


class FailureNotes:
    """The files reported on dicom-failed, one small object per file and generation."""

    def __init__(self, store: ObjectStore, bucket: str, prefix: str) -> None:
        self._store = store
        self.bucket = bucket
        self._root = f"{prefix}failed/"

    @staticmethod
    def key(bucket: str, name: str) -> str:
        return hashlib.sha256(f"{bucket}/{name}".encode()).hexdigest()[:32]

    def _path(self, bucket: str, name: str, generation: str | None) -> str:
        return f"{self._root}{self.key(bucket, name)}/{generation or 'none'}.json"

    def remember(self, failed: FailedFile) -> None:
        body = {"version": LEDGER_VERSION, "generation": failed.generation, **FailureNote.of(failed).to_dict()}
        self._store.write_json(self.bucket, self._path(failed.bucket, failed.name, failed.generation), body)

    def reported(self) -> ReportedFiles:
        """Which files were reported at which generations: one listing, no reads."""
        found: dict[str, set[str]] = {}
        for info in self._store.iterate(self.bucket, self._root):
            key, _, generation = info.name[len(self._root) :].removesuffix(".json").partition("/")
            found.setdefault(key, set()).add(generation)
        return ReportedFiles(found)

    def listed(self, since: datetime | None = None) -> list[ObjectInfo]:
        """The notes, newest first (only those written at or after ``since`` when given): one listing, no reads."""
        written = [(instant(info.updated, _UNREADABLE), info) for info in self._store.iterate(self.bucket, self._root)]
        chosen = [pair for pair in written if since is None or pair[0] >= since]
        return [info for _, info in sorted(chosen, key=lambda pair: pair[0], reverse=True)]

    def read(self, bucket: str, name: str, generation: str | None) -> FailureNote | None:
        return self.read_at(self._path(bucket, name, generation))

    def read_at(self, path: str) -> FailureNote | None:
        found = self._store.read_json(self.bucket, path)
        if found is None:
            return None
        check_version(found[0], "failure note")
        return FailureNote.from_dict(found[0])


@dataclass(frozen=True)
class ReportedFiles:
    """Generations reported failed, per file key (FailureNotes.key)."""

    generations: Mapping[str, set[str]]

    def of(self, bucket: str, name: str) -> set[str]:
        return self.generations.get(FailureNotes.key(bucket, name), set())

    def holds(self, bucket: str, name: str, generation: str | None) -> bool:
        return (generation or "none") in self.of(bucket, name)

"""Pure choices of a flush: which folders are ready, which generation of an object wins, which import URIs get
the free operation slots. No I/O: every function takes values and returns values."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from dicomflow.held import Key
from dicomflow.planner import ImportUri
from dicomflow.records import PendingRecord

LEFTOVER_URI_FILES = 2  # a URI covering this few files is sent with STOW-RS rather than wait for a slot


def ready_keys(
    records: Sequence[PendingRecord], *, settle_seconds: float, max_wait_seconds: float, now: datetime, batch_full: bool
) -> set[Key]:
    """Records whose folder settled (no upload for ``settle_seconds``), waited ``max_wait_seconds``, or all of
    them when the batch is full."""
    if batch_full:
        return {r.key for r in records}
    folders: dict[tuple[str, str], list[PendingRecord]] = defaultdict(list)
    for record in records:
        folders[(record.bucket, record.directory)].append(record)
    ready: set[Key] = set()
    for members in folders.values():
        times = [_time(r.event_time, now) for r in members]
        settled = (now - max(times)).total_seconds() >= settle_seconds
        overdue = (now - min(times)).total_seconds() >= max_wait_seconds
        if settled or overdue:
            ready.update(r.key for r in members)
    return ready


@dataclass
class Newest:
    """The newest pending generation of each object, by bucket, and the older generations it supersedes."""

    by_bucket: dict[str, dict[str, PendingRecord]] = field(default_factory=lambda: defaultdict(dict))
    superseded: list[Key] = field(default_factory=list)

    def record(self, bucket: str, name: str) -> PendingRecord:
        return self.by_bucket[bucket][name]


def newest_generations(records: Iterable[PendingRecord]) -> Newest:
    """An overwritten object is imported once, at its newest generation (what an import of its name reads)."""
    newest = Newest()
    for record in sorted(records, key=lambda r: (r.bucket, r.name, _generation(r.generation))):
        older = newest.by_bucket[record.bucket].get(record.name)
        if older is not None:
            newest.superseded.append(older.key)
        newest.by_bucket[record.bucket][record.name] = record
    return newest


@dataclass
class Allocation:
    """Import URIs that start now, files for STOW-RS now, and files that wait for a free slot."""

    chosen: list[tuple[str, ImportUri]] = field(default_factory=list)
    stow: list[tuple[str, str]] = field(default_factory=list)
    waiting: list[tuple[str, str]] = field(default_factory=list)


def allocate(candidates: Sequence[tuple[str, ImportUri]], *, slots: int, stow_budget: int) -> Allocation:
    """The largest URIs take the free slots; URIs of one or two files that find none are sent with STOW-RS
    (up to ``stow_budget`` files) instead of waiting; the rest wait for a later flush."""
    ordered = sorted(candidates, key=lambda c: -len(c[1].files))
    allocation = Allocation(chosen=list(ordered[:slots]))
    for bucket, item in ordered[slots:]:
        files = [(bucket, name) for name in item.files]
        if len(files) <= min(LEFTOVER_URI_FILES, stow_budget):
            allocation.stow.extend(files)
            stow_budget -= len(files)
        else:
            allocation.waiting.extend(files)
    return allocation


def batch_id_for(now: datetime, keys: Iterable[Key]) -> str:
    """``YYYYmmddTHHMMSSZ-<hash of the keys>``: sorts by time, and the same batch gets the same id."""
    digest = hashlib.sha256("\n".join("\t".join(k) for k in sorted(keys)).encode()).hexdigest()[:10]
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{digest}"


def _generation(value: str) -> int:
    return int(value) if value.isdigit() else 0


def _time(value: str, default: datetime) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return default
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)

"""Pure choices of a flush: which folders are ready, which generation of an object wins, which import URIs get
the free operation slots. No I/O: every function takes values and returns values."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from dicomflow.batching.held import Key
from dicomflow.batching.planner import ImportUri, Plan
from dicomflow.messages.records import BATCH_TIME_FORMAT, PendingRecord, ReadyMarker, SkippedFile, instant

_LONG_AGO = datetime.min.replace(tzinfo=UTC)


def ready_keys(
    records: Sequence[PendingRecord],
    *,
    settle_seconds: float,
    max_wait_seconds: float,
    now: datetime,
    batch_full: bool,
    markers: Iterable[ReadyMarker] = (),
) -> set[Key]:
    """Records whose folder settled (no upload for ``settle_seconds``), waited ``max_wait_seconds``, that a
    ready marker of their folder (or a parent) covers, or all of them when the batch is full."""
    if batch_full:
        return {r.key for r in records}
    markers = list(markers)
    ready: set[Key] = set()
    for members in _folders(records):
        if _ready_in(members, settle_seconds, max_wait_seconds, now) <= 0:
            ready.update(r.key for r in members)
        else:  # files that arrived after the marker wait for their own settling (the next batch)
            ready.update(r.key for r in members if any(m.covers(r) for m in markers))
    return ready


def seconds_until_ready(
    records: Sequence[PendingRecord], *, settle_seconds: float, max_wait_seconds: float, now: datetime
) -> float | None:
    """Seconds until the first folder of ``records`` that is not ready yet becomes ready (None: none waits)."""
    waits = [_ready_in(m, settle_seconds, max_wait_seconds, now) for m in _folders(records)]
    pending = [w for w in waits if w > 0]
    return min(pending) if pending else None


def skipped_to_retire(
    skipped: Iterable[SkippedFile], records: Sequence[PendingRecord], *, max_wait_seconds: float, now: datetime
) -> list[SkippedFile]:
    """Skipped DICOMDIRs no batch will count: no file of their file-set was pulled with them, and they waited
    ``max_wait_seconds`` -- the time a folder is given to produce its files (a DICOMDIR is often uploaded before
    its files, or they reach intake late). One whose files are pending waits for the batch that takes them."""
    retire = []
    for entry in skipped:
        age = (now - instant(entry.event_time, _LONG_AGO)).total_seconds()  # an unreadable time: retired
        if age >= max_wait_seconds and not any(entry.covers(r) for r in records):
            retire.append(entry)
    return retire


def _folders(records: Iterable[PendingRecord]) -> list[list[PendingRecord]]:
    folders: dict[tuple[str, str], list[PendingRecord]] = defaultdict(list)
    for record in records:
        folders[(record.bucket, record.directory)].append(record)
    return list(folders.values())


def _ready_in(members: Sequence[PendingRecord], settle_seconds: float, max_wait_seconds: float, now: datetime) -> float:
    """Seconds until this folder is ready: settled (no upload for ``settle_seconds``) or overdue; <= 0: ready."""
    times = [instant(r.event_time, now) for r in members]
    settled = (max(times) - now).total_seconds() + settle_seconds
    overdue = (min(times) - now).total_seconds() + max_wait_seconds
    return min(settled, overdue)


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
    """In-place imports that start now, files to stage into this batch's one staged import, files that wait."""

    in_place: list[tuple[str, ImportUri]] = field(default_factory=list)
    staged: list[tuple[str, str]] = field(default_factory=list)
    waiting: list[tuple[str, str]] = field(default_factory=list)


def allocate(plans: Sequence[Plan], *, slots: int, staging: str) -> Allocation:
    """Give the free operation slots to a batch.

    ``auto``/``always``: at most two imports. The largest in-place URI is kept when it is the whole batch, or
    when it holds at least half of it and two slots are free; every other file goes into the one staged import.
    ``never``: in-place URIs take the slots, largest first (one slot is kept for the staged import when some
    names no URI can address); the rest wait.
    """
    candidates = sorted(((p.bucket, i) for p in plans for i in p.imports), key=lambda c: -len(c[1].files))
    leftovers = [(p.bucket, name) for p in plans for name in p.staged]
    files = [(b, n) for b, i in candidates for n in i.files] + leftovers
    if slots < 1:
        return Allocation(waiting=files)
    if staging == "never":
        take = slots - 1 if leftovers else slots
        rest = [(b, n) for b, i in candidates[take:] for n in i.files]
        return Allocation(in_place=candidates[:take], staged=leftovers, waiting=rest)
    if not candidates:
        return Allocation(staged=files)
    bucket, best = candidates[0]
    taken = {(bucket, name) for name in best.files}
    others = [f for f in files if f not in taken]
    if not others or (slots >= 2 and 2 * len(best.files) >= len(files)):
        return Allocation(in_place=[(bucket, best)], staged=others)
    return Allocation(staged=files)


def batch_id_for(now: datetime, keys: Iterable[Key]) -> str:
    """``YYYYmmddTHHMMSSZ-<hash of the keys>``: sorts by time, and the same batch gets the same id."""
    digest = hashlib.sha256("\n".join("\t".join(k) for k in sorted(keys)).encode()).hexdigest()[:10]
    return f"{now.strftime(BATCH_TIME_FORMAT)}-{digest}"


def _generation(value: str) -> int:
    return int(value) if value.isdigit() else 0

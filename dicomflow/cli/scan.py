"""Objects examined as intake would (selection, header sniffing) and checked against the store by their UIDs,
in chunks, with header reads on a bounded pool and the chunk's series queried together (``stored_instances``)."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import islice

from dicomflow.cli.context import Context
from dicomflow.messages.events import ObjectEvent
from dicomflow.messages.records import PendingRecord
from dicomflow.pool import bounded
from dicomflow.ports import ObjectInfo
from dicomflow.reconcile.import_check import stored_instances
from dicomflow.stages.intake import Examined, examine, select

CHUNK = 500


@dataclass(frozen=True)
class Shard:
    """Worker ``index`` of ``count``: owns the names whose stable hash falls on it."""

    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, raw: str) -> Shard:
        index, slash, count = raw.partition("/")
        if not slash or not index.isdigit() or not count.isdigit() or not 0 <= int(index) < int(count):
            raise ValueError(f"{raw!r} is not I/N with 0 <= I < N")
        return cls(int(index), int(count))

    def owns(self, name: str) -> bool:
        if self.count == 1:
            return True
        return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass(frozen=True)
class Scanned:
    info: ObjectInfo
    examined: Examined
    in_store: bool | None  # None when it is not an importable instance


class SeriesCache:
    """The SOP Instance UIDs a record's store (its route's) holds per series, asked once per store and series:
    a chunk's new series are fetched together (``prefetch``: concurrent, study-level where that is fewer calls)."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._series: dict[tuple[str, str, str], set[str]] = {}

    def _store(self, record: PendingRecord) -> str:
        return self._ctx.settings.route_for(record.bucket, record.name).store

    def prefetch(self, records: Iterable[PendingRecord]) -> None:
        missing: dict[str, set[tuple[str, str]]] = defaultdict(set)
        for record in records:
            store = self._store(record)
            if (store, record.study_uid, record.series_uid) not in self._series:
                missing[store].add((record.study_uid, record.series_uid))
        for store, series in missing.items():
            for (study, one), sops in stored_instances(self._ctx.stores(store), series).items():
                self._series[(store, study, one)] = sops

    def holds(self, record: PendingRecord) -> bool:
        key = (self._store(record), record.study_uid, record.series_uid)
        if key not in self._series:
            self.prefetch([record])
        return record.sop_uid in self._series[key]


def candidates(
    ctx: Context, infos: Iterable[ObjectInfo], *, shard: Shard | None = None, since: datetime | None = None
) -> Iterator[ObjectInfo]:
    """The objects intake would select (and this shard owns, changed since ``since``)."""
    shard = shard or Shard()
    for info in infos:
        if ctx.settings.excluded(info.bucket, info.name) or not select(ctx.settings, info.name):
            continue
        if not shard.owns(info.name):
            continue
        if since is not None and info.updated and datetime.fromisoformat(info.updated) < since:
            continue
        yield info


def scan(ctx: Context, infos: Iterable[ObjectInfo], series: SeriesCache) -> Iterator[list[Scanned]]:
    """Chunks of examined objects (headers read concurrently), each instance checked against the store."""
    iterator = iter(infos)
    while chunk := list(islice(iterator, CHUNK)):
        examined = bounded(lambda info: examine(_event(info), ctx.settings, store=ctx.store), chunk)
        series.prefetch(result.record for result in examined if result.record is not None)
        yield [
            Scanned(info, result, None if result.record is None else series.holds(result.record))
            for info, result in zip(chunk, examined, strict=True)
        ]  # fmt: skip


def _event(info: ObjectInfo) -> ObjectEvent:
    return ObjectEvent(info.bucket, info.name, info.generation, info.size, info.crc32c, info.updated)

"""A bucket's in-place plan while the planner's steps draw it (``Draft``: the pending names, the listings, the
URIs emitted so far), the ``Plan`` and ``ImportUri`` it results in, and the name helpers the steps share."""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field

from dicomflow.batching.wildcard import compile_pattern, has_wildcards
from dicomflow.ports import Listing, ObjectLister


@dataclass(frozen=True)
class ImportUri:
    uri: str
    files: tuple[str, ...]


@dataclass
class Plan:
    bucket: str
    imports: list[ImportUri] = field(default_factory=list)
    staged: list[str] = field(default_factory=list)
    overshoot: int = 0
    listing_calls: int = 0

    @property
    def files(self) -> int:
        return sum(len(i.files) for i in self.imports) + len(self.staged)


_MAX_CHAR = "\U0010ffff"


def directory_of(name: str) -> str:
    head, slash, _ = name.rpartition("/")
    return head + slash


def extension_of(name: str) -> str:
    base = name.rpartition("/")[2]
    stem, dot, ext = base.rpartition(".")
    return f".{ext}" if dot and stem and "*" not in ext and "?" not in ext else ""


class Draft:
    """One bucket's plan as the steps add to it: what is pending, what is covered, what the listings cost."""

    def __init__(self, bucket: str, pending: Iterable[str], lister: ObjectLister, listing_cap: int) -> None:
        self.bucket = bucket
        self.pending = set(pending)
        self.lister = lister
        self.cap = listing_cap
        self.plan = Plan(bucket)
        self.covered: set[str] = set()
        self.sorted_pending = sorted(self.pending)

    def list_prefix(self, prefix: str, *, recursive: bool, limit: int) -> Listing:
        listing = self.lister.list_objects(self.bucket, prefix, recursive=recursive, limit=limit)
        self.plan.listing_calls += listing.calls
        return listing

    def add(self, pattern: str, files: Iterable[str], universe: Iterable[str]) -> None:
        """Emit ``pattern`` for the not yet covered pending ``files`` it matches (others it matches are pending)."""
        covered = tuple(sorted(set(files) - self.covered))
        self.covered.update(covered)
        if has_wildcards(pattern):  # an exact name matches only itself
            regex = compile_pattern(pattern)
            self.plan.overshoot += sum(1 for n in universe if regex.fullmatch(n) and n not in self.pending)
        self.plan.imports.append(ImportUri(f"gs://{self.bucket}/{pattern}", covered))

    def under(self, prefix: str) -> list[str]:
        """The pending names starting with ``prefix`` (a slice of the sorted names: no scan)."""
        start, end = self._bounds(prefix)
        return self.sorted_pending[start:end]

    def count_under(self, prefix: str) -> int:
        start, end = self._bounds(prefix)
        return end - start

    def _bounds(self, prefix: str) -> tuple[int, int]:
        start = bisect.bisect_left(self.sorted_pending, prefix)
        return start, bisect.bisect_left(self.sorted_pending, prefix + _MAX_CHAR, lo=start)

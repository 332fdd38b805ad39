"""The in-place import planner: import URIs that cover pending files where they lie and match nothing else.

Input: the pending object names of one bucket and a way to list it. Output: import URIs, each with the
pending files it covers, plus the files no in-place URI takes (``staged``: flush copies them into a staging
prefix of their own, see ``dicomflow.batching.staging``).

``plan_imports(..., subtrees_only=True)`` stops after step 1 and considers only subtrees holding at least
half of the pending files (smaller ones are not even listed): such a subtree is the only in-place import worth
an operation of its own; everything else is cheaper staged. With ``subtrees_only=False``
(``STAGING=never``) steps 2-4 cover the rest in place, down to exact names.

Candidates, cheapest first:
1. ``A/**.ext`` (or ``A/**``) at the highest folder ``A`` whose whole subtree is pending — checked with one
   recursive listing of ``A``, bounded by ``listing_cap`` and by the pending count (a folder with many more
   objects than pending files cannot collapse, so the listing stops early);
2. ``D/*`` when every object directly in folder ``D`` is pending;
3. ``D/prefix*.ext`` from a trie over the stems of ``D``'s objects: a trie node whose objects are all pending
   becomes one pattern (top-down greedy, which is minimal for prefix covers);
4. the exact object name.
Every URI is validated against the grammar and matched against the listing it was built from; a file whose
name (or folder) holds ``*``, ``?``, ``[`` or ``]`` and cannot be addressed without overshoot is staged.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from dicomflow.batching.wildcard import compile_pattern, has_wildcards, is_valid_object_pattern
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


def _directory(name: str) -> str:
    head, slash, _ = name.rpartition("/")
    return head + slash


def _extension(name: str) -> str:
    base = name.rpartition("/")[2]
    stem, dot, ext = base.rpartition(".")
    return f".{ext}" if dot and stem and "*" not in ext and "?" not in ext else ""


class _Planner:
    def __init__(
        self, bucket: str, pending: Iterable[str], lister: ObjectLister, listing_cap: int, subtrees_only: bool
    ) -> None:
        self.subtrees_only = subtrees_only
        self.bucket = bucket
        self.pending = set(pending)
        # with staging, a subtree is imported in place only when it holds at least half of the batch
        self.min_subtree_files = -(-len(self.pending) // 2) if subtrees_only else 0
        self.lister = lister
        self.cap = listing_cap
        self.plan = Plan(bucket)
        self.collapsible: dict[str, bool] = {}
        self.subtree_names: dict[str, tuple[str, ...]] = {}
        self.covered: set[str] = set()
        self.sorted_pending = sorted(self.pending)
        self.failed: list[str] = []

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

    def run(self) -> Plan:
        remaining = set(self.pending)
        for root in self._collapse_roots():
            under = set(self.under(root))
            remaining -= under
            self._emit_subtree(root, under)
        if self.subtrees_only:
            self.plan.staged.extend(remaining)
            remaining = set()
        by_directory: dict[str, list[str]] = defaultdict(list)
        for name in remaining:
            by_directory[_directory(name)].append(name)
        for directory in sorted(by_directory):
            self._cover_directory(directory, by_directory[directory])
        self.plan.imports.sort(key=lambda i: i.uri)
        self.plan.staged.sort()
        return self.plan

    # ----- 1. whole pending subtrees -----

    def _collapse_roots(self) -> list[str]:
        directories = {_directory(n) for n in self.pending}
        roots: set[str] = set()
        for directory in sorted(directories, key=len):
            if any(ancestor in roots for ancestor in _ancestors(directory)):
                continue
            best = None
            candidate: str | None = directory
            while candidate is not None and self.count_under(candidate) < self.min_subtree_files:
                candidate = _parent(candidate)  # too small to be worth an import of its own: not even listed
            while candidate is not None and self._subtree_pending(candidate):
                best = candidate
                candidate = _parent(candidate)
            if best is not None:
                roots = {r for r in roots if not r.startswith(best)} | {best}
        return sorted(roots)

    def _subtree_pending(self, prefix: str) -> bool:
        if prefix in self.collapsible:
            return self.collapsible[prefix]
        if has_wildcards(prefix) or self._has_failed_descendant(prefix):
            self._fail(prefix)
            return False
        pending_under = self.under(prefix)
        extension = _common_extension(pending_under)
        if not is_valid_object_pattern(f"{prefix}**{extension}") or len(pending_under) > self.cap:
            self._fail(prefix)
            return False
        limit = min(self.cap, 2 * len(pending_under) + 100)
        listing = self.list_prefix(prefix, recursive=True, limit=limit)
        ok = not listing.truncated and all(n in self.pending for n in listing.names if n.endswith(extension))
        if not ok:
            self._fail(prefix)
            return False
        self.collapsible[prefix] = True
        self.subtree_names[prefix] = listing.names
        return True

    def _fail(self, prefix: str) -> None:
        self.collapsible[prefix] = False
        bisect.insort(self.failed, prefix)

    def _has_failed_descendant(self, prefix: str) -> bool:
        """A folder whose subfolder cannot collapse cannot collapse either (sorted: one bisect)."""
        index = bisect.bisect_left(self.failed, prefix)
        return index < len(self.failed) and self.failed[index].startswith(prefix)

    def _emit_subtree(self, root: str, files: set[str]) -> None:
        extension = _common_extension(files)
        self.add(f"{root}**{extension}", files, self.subtree_names.get(root, ()))

    # ----- 2-4. one folder -----

    def _cover_directory(self, directory: str, files: list[str]) -> None:
        if has_wildcards(directory):
            # a wildcard in the folder part could match other folders: no pattern here is safe
            self.plan.staged.extend(files)
            return
        listing = self.list_prefix(directory, recursive=False, limit=self.cap)
        if listing.truncated:
            for name in files:
                self._exact(name, ())
            return
        universe = set(listing.names) | set(files)
        if all(n in self.pending for n in universe) and len(files) > 1:
            self.add(f"{directory}*", files, universe)
            return
        groups: dict[str, list[str]] = defaultdict(list)
        for name in files:
            groups[_extension(name)].append(name)
        for extension, group in sorted(groups.items()):
            self._trie_cover(directory, extension, group, universe)

    def _trie_cover(self, directory: str, extension: str, files: list[str], universe: set[str]) -> None:
        start = len(directory)
        group = set(files)
        members = sorted(n for n in universe if n.endswith(extension) and len(n) - len(extension) >= start)
        stems = {n: n[start : len(n) - len(extension) if extension else len(n)] for n in members}
        stack: list[tuple[str, list[str]]] = [("", members)]
        while stack:
            prefix, names = stack.pop()
            wanted = [n for n in names if n in group and n not in self.covered]
            if not wanted:
                continue
            if all(n in self.pending for n in names):
                if len(wanted) == 1 and len(names) == 1:
                    self._exact(wanted[0], universe)
                    continue
                pattern = f"{directory}{prefix}*{extension}"
                # without wildcard characters in the prefix, the pattern matches exactly this trie node's names
                literal = not has_wildcards(prefix)
                if is_valid_object_pattern(pattern) and (literal or self._exactly(pattern, names, universe)):
                    self.add(pattern, wanted, () if literal else universe)
                    continue
            children: dict[str, list[str]] = defaultdict(list)
            for name in names:
                stem = stems[name]
                if len(stem) == len(prefix):
                    if name in group and name not in self.covered:
                        self._exact(name, universe)
                else:
                    children[stem[len(prefix)]].append(name)
            for char in sorted(children, reverse=True):
                stack.append((prefix + char, children[char]))

    def _exactly(self, pattern: str, names: list[str], universe: Iterable[str]) -> bool:
        regex = compile_pattern(pattern)
        return {n for n in universe if regex.fullmatch(n)} == set(names)

    def _exact(self, name: str, universe: Iterable[str]) -> None:
        if not has_wildcards(name):
            self.add(name, [name], ())
        elif is_valid_object_pattern(name) and "**" not in name and self._exactly(name, [name], universe):
            self.add(name, [name], universe)
        else:
            self.plan.staged.append(name)
            self.covered.add(name)


def _ancestors(directory: str) -> list[str]:
    """``a/b/`` -> ``["a/b/", "a/", ""]``."""
    found: list[str] = []
    current: str | None = directory
    while current is not None:
        found.append(current)
        current = _parent(current)
    return found


def _parent(directory: str) -> str | None:
    if not directory:
        return None
    return _directory(directory[:-1])


def _common_extension(names: Iterable[str]) -> str:
    extensions = {_extension(n) for n in names}
    return extensions.pop() if len(extensions) == 1 else ""


def plan_imports(
    bucket: str, pending: Iterable[str], lister: ObjectLister, *, listing_cap: int = 50000, subtrees_only: bool = False
) -> Plan:
    """The in-place import URIs for the pending objects of one bucket, and the files left to stage."""
    return _Planner(bucket, pending, lister, listing_cap, subtrees_only).run()


def plan_buckets(
    pending: Mapping[str, Iterable[str]], lister: ObjectLister, *, staging: str, listing_cap: int
) -> list[Plan]:
    """One plan per bucket for a batch, as STAGING asks: ``always`` stages everything without listing,
    ``auto`` looks only for whole new subtrees, ``never`` covers everything in place it can."""
    if staging == "always":
        return [Plan(bucket, staged=sorted(names)) for bucket, names in sorted(pending.items())]
    return [
        plan_imports(bucket, names, lister, listing_cap=listing_cap, subtrees_only=staging == "auto")
        for bucket, names in sorted(pending.items())
    ]

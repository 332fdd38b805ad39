"""Step 1 of the in-place planner: the highest folders whose whole subtree is pending, each checked with one
recursive listing bounded by the listing cap and the pending count, and their ``A/**.ext`` (or ``A/**``) URIs."""

from __future__ import annotations

import bisect
from collections.abc import Iterable

from dicomflow.batching.plan_draft import Draft, directory_of, extension_of
from dicomflow.batching.wildcard import has_wildcards, is_valid_object_pattern


class Subtrees:
    """Which folders of a draft collapse into one URI; remembers every folder it checked (listed once)."""

    def __init__(self, draft: Draft, *, subtrees_only: bool) -> None:
        self.draft = draft
        # with staging, a subtree is imported in place only when it holds at least half of the batch
        self.min_subtree_files = -(-len(draft.pending) // 2) if subtrees_only else 0
        self.collapsible: dict[str, bool] = {}
        self.subtree_names: dict[str, tuple[str, ...]] = {}
        self.failed: list[str] = []

    def roots(self) -> list[str]:
        directories = {directory_of(n) for n in self.draft.pending}
        roots: set[str] = set()
        for directory in sorted(directories, key=len):
            if any(ancestor in roots for ancestor in _ancestors(directory)):
                continue
            best = None
            candidate: str | None = directory
            while candidate is not None and self.draft.count_under(candidate) < self.min_subtree_files:
                candidate = _parent(candidate)  # too small to be worth an import of its own: not even listed
            while candidate is not None and self._subtree_pending(candidate):
                best = candidate
                candidate = _parent(candidate)
            if best is not None:
                roots = {r for r in roots if not r.startswith(best)} | {best}
        return sorted(roots)

    def emit(self, root: str, files: set[str]) -> None:
        extension = _common_extension(files)
        self.draft.add(f"{root}**{extension}", files, self.subtree_names.get(root, ()))

    def _subtree_pending(self, prefix: str) -> bool:
        if prefix in self.collapsible:
            return self.collapsible[prefix]
        if has_wildcards(prefix) or self._has_failed_descendant(prefix):
            self._fail(prefix)
            return False
        pending_under = self.draft.under(prefix)
        extension = _common_extension(pending_under)
        if not is_valid_object_pattern(f"{prefix}**{extension}") or len(pending_under) > self.draft.cap:
            self._fail(prefix)
            return False
        limit = min(self.draft.cap, 2 * len(pending_under) + 100)
        listing = self.draft.list_prefix(prefix, recursive=True, limit=limit)
        ok = not listing.truncated and all(n in self.draft.pending for n in listing.names if n.endswith(extension))
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
    return directory_of(directory[:-1])


def _common_extension(names: Iterable[str]) -> str:
    extensions = {extension_of(n) for n in names}
    return extensions.pop() if len(extensions) == 1 else ""

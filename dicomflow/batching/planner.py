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

This module is the sequence; step 1 lives in ``subtrees``, steps 2-4 in ``folder_covers``, the plan they draw
together (and ``Plan``, ``ImportUri``) in ``plan_draft``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

from dicomflow.batching.folder_covers import cover_directory
from dicomflow.batching.plan_draft import Draft, ImportUri, Plan, directory_of
from dicomflow.batching.subtrees import Subtrees
from dicomflow.ports import ObjectLister

__all__ = ["ImportUri", "Plan", "plan_buckets", "plan_imports"]


def plan_imports(
    bucket: str, pending: Iterable[str], lister: ObjectLister, *, listing_cap: int = 50000, subtrees_only: bool = False
) -> Plan:
    """The in-place import URIs for the pending objects of one bucket, and the files left to stage."""
    draft = Draft(bucket, pending, lister, listing_cap)
    subtrees = Subtrees(draft, subtrees_only=subtrees_only)
    remaining = set(draft.pending)
    for root in subtrees.roots():
        under = set(draft.under(root))
        remaining -= under
        subtrees.emit(root, under)
    if subtrees_only:
        draft.plan.staged.extend(remaining)
        remaining = set()
    by_directory: dict[str, list[str]] = defaultdict(list)
    for name in remaining:
        by_directory[directory_of(name)].append(name)
    for directory in sorted(by_directory):
        cover_directory(draft, directory, by_directory[directory])
    draft.plan.imports.sort(key=lambda i: i.uri)
    draft.plan.staged.sort()
    return draft.plan


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

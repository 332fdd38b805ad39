"""Steps 2-4 of the in-place planner, for the pending files of one folder ``D``: ``D/*`` when every object of
the folder is pending, else ``D/prefix*.ext`` from a trie over the stems of its objects, else exact names; a
file no URI can address without overshoot is staged."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from dicomflow.batching.plan_draft import Draft, extension_of
from dicomflow.batching.wildcard import compile_pattern, has_wildcards, is_valid_object_pattern


def cover_directory(draft: Draft, directory: str, files: list[str]) -> None:
    if has_wildcards(directory):
        # a wildcard in the folder part could match other folders: no pattern here is safe
        draft.plan.staged.extend(files)
        return
    listing = draft.list_prefix(directory, recursive=False, limit=draft.cap)
    if listing.truncated:
        for name in files:
            _exact(draft, name, ())
        return
    universe = set(listing.names) | set(files)
    if all(n in draft.pending for n in universe) and len(files) > 1:
        draft.add(f"{directory}*", files, universe)
        return
    groups: dict[str, list[str]] = defaultdict(list)
    for name in files:
        groups[extension_of(name)].append(name)
    for extension, group in sorted(groups.items()):
        _trie_cover(draft, directory, extension, group, universe)


def _trie_cover(draft: Draft, directory: str, extension: str, files: list[str], universe: set[str]) -> None:
    start = len(directory)
    group = set(files)
    members = sorted(n for n in universe if n.endswith(extension) and len(n) - len(extension) >= start)
    stems = {n: n[start : len(n) - len(extension) if extension else len(n)] for n in members}
    stack: list[tuple[str, list[str]]] = [("", members)]
    while stack:
        prefix, names = stack.pop()
        wanted = [n for n in names if n in group and n not in draft.covered]
        if not wanted:
            continue
        if all(n in draft.pending for n in names):
            if len(wanted) == 1 and len(names) == 1:
                _exact(draft, wanted[0], universe)
                continue
            pattern = f"{directory}{prefix}*{extension}"
            # without wildcard characters in the prefix, the pattern matches exactly this trie node's names
            literal = not has_wildcards(prefix)
            if is_valid_object_pattern(pattern) and (literal or _exactly(pattern, names, universe)):
                draft.add(pattern, wanted, () if literal else universe)
                continue
        children: dict[str, list[str]] = defaultdict(list)
        for name in names:
            stem = stems[name]
            if len(stem) == len(prefix):
                if name in group and name not in draft.covered:
                    _exact(draft, name, universe)
            else:
                children[stem[len(prefix)]].append(name)
        for char in sorted(children, reverse=True):
            stack.append((prefix + char, children[char]))


def _exactly(pattern: str, names: list[str], universe: Iterable[str]) -> bool:
    regex = compile_pattern(pattern)
    return {n for n in universe if regex.fullmatch(n)} == set(names)


def _exact(draft: Draft, name: str, universe: Iterable[str]) -> None:
    if not has_wildcards(name):
        draft.add(name, [name], ())
    elif is_valid_object_pattern(name) and "**" not in name and _exactly(name, [name], universe):
        draft.add(name, [name], universe)
    else:
        draft.plan.staged.append(name)
        draft.covered.add(name)

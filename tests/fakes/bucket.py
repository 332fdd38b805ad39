"""An in-memory bucket listing with the GCS listing semantics the planner relies on."""

from __future__ import annotations

import bisect
from collections.abc import Iterable

from dicomflow.ports import Listing

PAGE = 1000


class FakeLister:
    """Lists a sorted set of object names; counts calls the way GCS pages would."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = sorted(set(names))
        self.requests: list[tuple[str, bool]] = []

    def list_objects(self, bucket: str, prefix: str, *, recursive: bool, limit: int) -> Listing:
        self.requests.append((prefix, recursive))
        start = bisect.bisect_left(self.names, prefix)
        found: list[str] = []
        for name in self.names[start:]:
            if not name.startswith(prefix):
                break
            if not recursive and "/" in name[len(prefix) :]:
                continue
            found.append(name)
            if len(found) > limit:
                break
        truncated = len(found) > limit
        found = found[:limit]
        return Listing(tuple(found), truncated, max(1, -(-len(found) // PAGE)))

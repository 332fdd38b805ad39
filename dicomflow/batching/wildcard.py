"""The Healthcare API's import URI grammar, as the planner must respect it (see DESIGN.md §1).

``*`` = 0+ characters except ``/``; ``?`` = one character except ``/``; ``**`` = 0+ characters including ``/``,
only as the single wildcard at the end of the path, optionally followed by an extension. ``[``/``]`` are never
valid. This is deliberately independent of ``healthcare_emulator``'s implementation, which tests hold it to.
"""

from __future__ import annotations

import re
from functools import lru_cache

WILDCARD_CHARACTERS = frozenset("*?[]")
_EXTENSION = re.compile(r"^(\.[^/*?]+)?$")


def is_valid_object_pattern(pattern: str) -> bool:
    """True when ``gs://bucket/{pattern}`` is a URI the import method accepts."""
    if not pattern or "[" in pattern or "]" in pattern or "***" in pattern:
        return False
    count = pattern.count("**")
    if count == 0:
        return True
    if count > 1:
        return False
    head, _, tail = pattern.partition("**")
    return not any(c in head or c in tail for c in "*?") and bool(_EXTENSION.match(tail))


@lru_cache(maxsize=4096)
def compile_pattern(pattern: str) -> re.Pattern[str]:
    """The regex a valid object pattern matches with (full match)."""
    parts: list[str] = []
    index = 0
    while index < len(pattern):
        if pattern.startswith("**", index):
            parts.append(".*")
            index += 2
        elif pattern[index] == "*":
            parts.append("[^/]*")
            index += 1
        elif pattern[index] == "?":
            parts.append("[^/]")
            index += 1
        else:
            parts.append(re.escape(pattern[index]))
            index += 1
    return re.compile("".join(parts), re.DOTALL)


def has_wildcards(text: str) -> bool:
    return any(c in WILDCARD_CHARACTERS for c in text)

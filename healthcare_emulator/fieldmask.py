"""``updateMask`` of a PATCH: copy the named (possibly nested, dotted) fields from the body to the resource.

As google.protobuf.FieldMask does: ``notificationConfig.pubsubTopic`` replaces that one field and leaves its
siblings alone; a path present in the mask but absent from the body clears the field.
"""

from __future__ import annotations

import copy
from typing import Any

from healthcare_emulator.errors import invalid_argument


def mask_paths(raw: str | None, body: dict[str, Any]) -> list[str]:
    """The paths of ``updateMask`` (comma separated); without one, every top-level field of the body but name."""
    paths = [path.strip() for path in (raw or "").split(",") if path.strip()]
    return paths or [key for key in body if key != "name"]


def apply_update_mask(
    resource: dict[str, Any], body: dict[str, Any], paths: list[str], updatable: frozenset[str]
) -> dict[str, Any]:
    """A copy of ``resource`` with ``paths`` taken from ``body``; 400 naming a path that cannot be updated."""
    updated = copy.deepcopy(resource)
    for path in paths:
        parts = path.split(".")
        if parts[0] not in updatable or any(not part for part in parts):
            raise invalid_argument(
                f"field {path!r} cannot be updated; updatable fields: {', '.join(sorted(updatable))}"
            )
        source: Any = body
        for part in parts:
            source = source.get(part) if isinstance(source, dict) else None
        target = updated
        for part in parts[:-1]:
            child = target.get(part)
            if not isinstance(child, dict):
                child = {}
                target[part] = child
            target = child
        if source is None:
            target.pop(parts[-1], None)
        else:
            target[parts[-1]] = copy.deepcopy(source)
        if len(parts) > 1 and not updated.get(parts[0]):
            updated.pop(parts[0], None)
    return updated

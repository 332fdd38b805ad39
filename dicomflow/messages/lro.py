"""Reading a long-running operation's JSON: its age, its counters, why it failed, its per-file errors."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

_REASON_CHARS = 500


def age_seconds(operation: Mapping[str, Any], now: datetime) -> float:
    """Seconds since the operation's ``metadata.createTime`` (0 when it has none)."""
    created = str(operation.get("metadata", {}).get("createTime", ""))
    try:
        started = datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    return (now - started).total_seconds()


def counter(operation: Mapping[str, Any]) -> dict[str, Any]:
    return dict(operation.get("metadata", {}).get("counter", {}))


def counted(operation: Mapping[str, Any], key: str) -> int:
    """One field of the operation's counter (``success``, ``failure``; 0 when absent or unreadable)."""
    return count_of(counter(operation), key)


def count_of(counts: Mapping[str, Any], key: str) -> int:
    """One field of a counter as recorded (the API sends int64 as strings); 0 when absent or unreadable."""
    try:
        return int(counts.get(key, 0))
    except (TypeError, ValueError):
        return 0


def failures(operation: Mapping[str, Any]) -> int:
    """How many items the operation failed (its counter's ``failure``)."""
    return counted(operation, "failure")


def reason(operation: Mapping[str, Any]) -> str:
    """Why an operation's files may be missing, in one line."""
    if operation.get("stuck"):
        return "the operation did not finish in time"
    error = operation.get("error")
    if isinstance(error, Mapping) and error.get("message"):
        return str(error["message"])[:_REASON_CHARS]
    return "the operation reported success but the instance is not in the store"


def sample_errors(operation: Mapping[str, Any]) -> dict[str, str]:
    """Per-file reasons the API attaches to a failed import (``error.details[].sampleErrors``), by gs:// URI."""
    reasons: dict[str, str] = {}
    error = operation.get("error")
    for detail in error.get("details", []) if isinstance(error, Mapping) else []:
        for sample in detail.get("sampleErrors", []) if isinstance(detail, Mapping) else []:
            resource = sample.get("resource")
            message = (sample.get("error") or {}).get("message")
            if resource and message:
                reasons[str(resource)] = str(message)[:_REASON_CHARS]
    return reasons

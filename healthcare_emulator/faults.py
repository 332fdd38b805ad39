"""Fault injection (off by default): answer the next N matching requests with an error status.

``POST /emulator/faults`` with ``{"method": "POST", "path": ":import$", "status": 503, "count": 2}`` adds a
rule (``path`` is a regex searched in the request path); ``DELETE /emulator/faults`` clears every rule;
``GET /emulator/faults`` shows the rules and how many requests each one failed.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any

from healthcare_emulator.errors import ApiError, invalid_argument

_STATUS_NAMES = {
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


@dataclass
class FaultRule:
    method: str
    path: re.Pattern[str]
    status: int
    remaining: int
    fired: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path.pattern,
            "status": self.status,
            "remaining": self.remaining,
            "fired": self.fired,
        }


class FaultInjector:
    def __init__(self) -> None:
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()

    def add(self, body: dict[str, Any]) -> FaultRule:
        try:
            rule = FaultRule(
                method=str(body.get("method", "*")).upper(),
                path=re.compile(str(body.get("path", ""))),
                status=int(body["status"]),
                remaining=int(body.get("count", 1)),
            )
        except (KeyError, TypeError, ValueError, re.error) as exc:
            raise invalid_argument(
                f"fault rule needs status (int), optional method, path (regex), count: {exc}"
            ) from exc
        if rule.status not in _STATUS_NAMES:
            raise invalid_argument(f"fault status must be one of {sorted(_STATUS_NAMES)}")
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def rules(self) -> list[dict[str, Any]]:
        with self._lock:
            return [rule.to_json() for rule in self._rules]

    def check(self, method: str, path: str) -> None:
        """Raise the injected error when a rule matches this request (and count it down)."""
        with self._lock:
            for rule in self._rules:
                if rule.remaining > 0 and rule.method in ("*", method) and rule.path.search(path):
                    rule.remaining -= 1
                    rule.fired += 1
                    status = rule.status
                    break
            else:
                return
        raise ApiError(status, _STATUS_NAMES[status], f"injected fault: HTTP {status} for {method} {path}")

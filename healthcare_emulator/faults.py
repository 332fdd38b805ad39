"""Fault injection (off by default): answer the next N matching requests with an error status.

``POST /emulator/faults`` with ``{"method": "POST", "path": ":import$", "status": 503, "count": 2}`` adds a
rule (``path`` is a regex searched in the request path; ``status`` 403, 429, 500, 502, 503 or 504);
``DELETE /emulator/faults`` clears every rule;
``GET /emulator/faults`` shows the rules and how many requests each one failed.

With ``"rate": 0.05`` instead of ``count``, a rule fails that fraction of matching requests for as long as it
stays (``"seconds": S`` adds latency instead of an error when ``status`` is omitted). ``python -m
healthcare_emulator --faults RULES.json`` installs rules at start, so they survive a restart.

Two more kinds of rule shape operations rather than requests:
``{"kind": "import-file", "object": "regex", "count": N}`` makes an import fail the next N objects whose name
matches (the operation then ends with an error, like a real partially failed import), and
``{"kind": "operation-delay", "seconds": S, "count": N}`` makes the next N operations wait S seconds before
they start working (they stay ``done: false`` meanwhile).

Every rule can be scoped to what it targets, so a test's rule never fires on another test's traffic:
``"store": "regex"`` (searched in the DICOM store's resource name; operation rules and HTTP rules alike),
``"operation": "ImportDicomData"`` (operation rules: the operation's method, e.g. ``ExportDicomData``), besides
an HTTP rule's ``method`` and ``path``. Clearing the rules also cancels what they hold: a request sleeping on
an HTTP latency rule is answered 503 instead of going on to do its work (its client is usually gone), and an
operation waiting on a delay starts working at once.
"""

from __future__ import annotations

import random
import re
import threading
from dataclasses import dataclass
from typing import Any

from healthcare_emulator.errors import ApiError, invalid_argument
from healthcare_emulator.waits import Waits

_STATUS_NAMES = {
    403: "PERMISSION_DENIED",  # a caller without the role: how the pipeline and the CLI name the role to grant
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


class FaultsClearedError(Exception):
    """A sleep on a fault was cut short because the rules were cleared."""


def _matches(scope: re.Pattern[str] | None, value: str | None) -> bool:
    return scope is None or (value is not None and scope.search(value) is not None)


def _scope(body: dict[str, Any], key: str) -> re.Pattern[str] | None:
    return re.compile(str(body[key])) if body.get(key) is not None else None


@dataclass
class FaultRule:
    method: str
    path: re.Pattern[str]
    status: int | None  # None: latency only
    remaining: int | None  # None: rate-based, never used up
    rate: float = 1.0
    seconds: float = 0.0
    store: re.Pattern[str] | None = None
    fired: int = 0

    def applies_to(self, method: str, path: str) -> bool:
        if self.remaining == 0 or self.method not in ("*", method) or not self.path.search(path):
            return False
        return _matches(self.store, path)

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method, "path": self.path.pattern, "status": self.status, "remaining": self.remaining,
            "rate": self.rate, "seconds": self.seconds, "store": self.store.pattern if self.store else None,
            "fired": self.fired,
        }  # fmt: skip


@dataclass
class OperationFault:
    kind: str  # import-file, operation-delay
    pattern: re.Pattern[str] | None
    seconds: float
    remaining: int
    store: re.Pattern[str] | None = None
    operation: str | None = None
    fired: int = 0

    def applies_to(self, kind: str, store: str | None, operation: str | None, name: str | None) -> bool:
        if self.kind != kind or self.remaining <= 0 or not _matches(self.store, store):
            return False
        if self.operation is not None and self.operation != operation:
            return False
        return self.pattern is None or (name is not None and self.pattern.search(name) is not None)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "object": self.pattern.pattern if self.pattern else None,
            "seconds": self.seconds,
            "remaining": self.remaining,
            "store": self.store.pattern if self.store else None,
            "operation": self.operation,
            "fired": self.fired,
        }


class FaultInjector:
    def __init__(self, seed: int | None = None) -> None:
        self._random = random.Random(seed)
        self._rules: list[FaultRule] = []
        self._operation_faults: list[OperationFault] = []
        self._lock = threading.Lock()
        self._sleepers = Waits()  # clear() ends every sleep

    def add(self, body: dict[str, Any]) -> None:
        kind = body.get("kind", "http")
        if kind in ("import-file", "operation-delay"):
            try:
                fault = OperationFault(
                    kind=kind,
                    pattern=re.compile(str(body["object"])) if kind == "import-file" else None,
                    seconds=float(body.get("seconds", 0)),
                    remaining=int(body.get("count", 1)),
                    store=_scope(body, "store"),
                    operation=str(body["operation"]) if body.get("operation") is not None else None,
                )
            except (KeyError, TypeError, ValueError, re.error) as exc:
                raise invalid_argument(f"{kind} fault needs object (regex) or seconds, and count: {exc}") from exc
            with self._lock:
                self._operation_faults.append(fault)
            return
        if kind != "http":
            raise invalid_argument(f"unknown fault kind {kind!r}: use http, import-file or operation-delay")
        self._add_http(body)

    def _add_http(self, body: dict[str, Any]) -> FaultRule:
        try:
            status = int(body["status"]) if body.get("status") is not None else None
            rate = float(body.get("rate", 1.0))
            rule = FaultRule(
                method=str(body.get("method", "*")).upper(),
                path=re.compile(str(body.get("path", ""))),
                status=status,
                remaining=int(body["count"]) if "count" in body else (None if "rate" in body else 1),
                rate=rate,
                seconds=float(body.get("seconds", 0.0)),
                store=_scope(body, "store"),
            )
        except (KeyError, TypeError, ValueError, re.error) as exc:
            raise invalid_argument(
                f"fault rule needs status and/or seconds, optional method, path, store, count, rate: {exc}"
            ) from exc
        if rule.status is None and not rule.seconds:
            raise invalid_argument("a fault rule needs a status, a latency (seconds), or both")
        if rule.status is not None and rule.status not in _STATUS_NAMES:
            raise invalid_argument(f"fault status must be one of {sorted(_STATUS_NAMES)}")
        if not 0.0 <= rule.rate <= 1.0:
            raise invalid_argument("fault rate must be between 0 and 1")
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear(self) -> None:
        """Drop every rule and wake every request or operation sleeping on one."""
        with self._lock:
            self._rules.clear()
            self._operation_faults.clear()
        self._sleepers.cancel_all()

    def sleep(self, seconds: float) -> None:
        """Sleep for a fault's latency; raises FaultsClearedError when the rules are cleared meanwhile."""
        if not self._sleepers.wait(seconds):
            raise FaultsClearedError

    def rules(self) -> list[dict[str, Any]]:
        with self._lock:
            return [rule.to_json() for rule in self._rules] + [f.to_json() for f in self._operation_faults]

    def _take(
        self, kind: str, store: str | None, operation: str | None, name: str | None = None
    ) -> OperationFault | None:
        with self._lock:
            for fault in self._operation_faults:
                if not fault.applies_to(kind, store, operation, name):
                    continue
                fault.remaining -= 1
                fault.fired += 1
                return fault
        return None

    def fails_import_of(self, store: str, object_name: str) -> bool:
        """True when an import-file rule for this store claims this object (counted down)."""
        return self._take("import-file", store, "ImportDicomData", object_name) is not None

    def operation_delay(self, store: str, operation: str) -> float:
        """Seconds this store's next operation of this kind waits before working (0 without a rule)."""
        fault = self._take("operation-delay", store, operation)
        return fault.seconds if fault else 0.0

    def check(self, method: str, path: str) -> None:
        """Sleep and/or raise the injected error when a rule matches this request (counted)."""
        delay = 0.0
        status: int | None = None
        with self._lock:
            for rule in self._rules:
                if not rule.applies_to(method, path):
                    continue
                if rule.rate < 1.0 and self._random.random() >= rule.rate:
                    continue
                if rule.remaining is not None:
                    rule.remaining -= 1
                rule.fired += 1
                delay = max(delay, rule.seconds)
                if rule.status is not None:
                    status = rule.status
                    break
        if delay:
            try:
                self.sleep(delay)
            except FaultsClearedError:
                raise ApiError(
                    503, "UNAVAILABLE", f"request held by a fault was cancelled (rules cleared): {method} {path}"
                ) from None
        if status is not None:
            raise ApiError(status, _STATUS_NAMES[status], f"injected fault: HTTP {status} for {method} {path}")

"""Timing profile (off by default): the emulator answers with the cloud's clocks instead of its own.

``python -m healthcare_emulator --timing PROFILE.json``, or ``POST /emulator/timing`` with the profile (``DELETE``
turns it off, ``GET`` shows it)::

    {"import": {"fixed_seconds": 20, "per_file_seconds": 0.03, "per_mb_seconds": 0.05},
     "export": {"fixed_seconds": 20, "per_file_seconds": 0.01, "per_mb_seconds": 0.05},
     "deidentify": {"fixed_seconds": 20, "per_file_seconds": 0.05, "per_mb_seconds": 0.1},
     "latency": {"operations.get": {"p50_ms": 60, "p99_ms": 250}, "qido": {...}, "wado": {...}, "delete": {...}},
     "seed": 1}

An import, export or store de-identification lasts at least ``fixed + per_file x files + per_mb x MB`` seconds
from its start (it does its work, then stays ``done: false`` for the rest); each ``operations.get``, QIDO-RS, WADO-RS
and DICOMweb DELETE request waits a latency drawn from a log-normal distribution with that median and 99th
percentile before it is answered. Turning the profile off wakes whatever waits on it.
"""

from __future__ import annotations

import math
import random
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from healthcare_emulator.errors import invalid_argument
from healthcare_emulator.waits import Waits

_Z99 = 2.3263478740408408  # the standard normal's 99th percentile
_OPERATION_GET = re.compile(r"/operations/[^/:]+$")
_QIDO = re.compile(r"/dicomWeb(?:/studies/[^/]+(?:/series/[^/]+)?)?/(?:studies|series|instances)$")
REQUEST_KINDS = ("operations.get", "qido", "wado", "delete")
OPERATION_KINDS = {"ImportDicomData": "import", "ExportDicomData": "export", "DeidentifyDicomStore": "deidentify"}


@dataclass(frozen=True)
class Latency:
    """A log-normal latency given by its median and 99th percentile, in milliseconds."""

    p50_ms: float
    p99_ms: float

    def draw(self, rng: random.Random) -> float:
        """One latency in seconds."""
        if self.p50_ms <= 0:
            return 0.0
        sigma = math.log(max(self.p99_ms, self.p50_ms) / self.p50_ms) / _Z99
        return rng.lognormvariate(math.log(self.p50_ms), sigma) / 1000


@dataclass(frozen=True)
class Duration:
    """How long an operation lasts: ``fixed + per_file x files + per_mb x MB`` seconds."""

    fixed_seconds: float = 0.0
    per_file_seconds: float = 0.0
    per_mb_seconds: float = 0.0

    def seconds(self, files: int, size: int) -> float:
        return self.fixed_seconds + self.per_file_seconds * files + self.per_mb_seconds * size / 1_000_000


@dataclass(frozen=True)
class TimingProfile:
    operations: dict[str, Duration] = field(default_factory=dict)  # "import" / "export" / "deidentify"
    latency: dict[str, Latency] = field(default_factory=dict)  # REQUEST_KINDS
    seed: int | None = None

    @classmethod
    def from_json(cls, body: Any) -> TimingProfile:
        if not isinstance(body, dict):
            raise invalid_argument("a timing profile is a JSON object")
        try:
            operations = {kind: Duration(**{k: float(v) for k, v in body[kind].items()})
                          for kind in OPERATION_KINDS.values() if body.get(kind)}  # fmt: skip
            latency = {kind: Latency(float(value["p50_ms"]), float(value["p99_ms"]))
                       for kind, value in (body.get("latency") or {}).items()}  # fmt: skip
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise invalid_argument(f"timing profile: {exc!r}; see healthcare_emulator/timing.py") from exc
        unknown = set(latency) - set(REQUEST_KINDS)
        if unknown:
            raise invalid_argument(f"timing profile: unknown latency kinds {sorted(unknown)}; use {REQUEST_KINDS}")
        seed = body.get("seed")
        return cls(operations, latency, int(seed) if seed is not None else None)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {kind: vars(duration) for kind, duration in self.operations.items()}
        body["latency"] = {kind: vars(latency) for kind, latency in self.latency.items()}
        if self.seed is not None:
            body["seed"] = self.seed
        return body


def request_kind(method: str, path: str) -> str | None:
    """Which latency of the profile a request waits: operations.get, qido, wado, delete (None: no latency)."""
    if method == "GET" and _OPERATION_GET.search(path):
        return "operations.get"
    if "/dicomWeb/" not in path and not path.endswith("/dicomWeb"):
        return None
    if method == "DELETE":
        return "delete"
    if method == "GET":
        return "qido" if _QIDO.search(path) else "wado"
    return None


class Clocks:
    """The emulator's timing profile (None: off) and the waits it imposes; ``set`` and ``clear`` wake them."""

    def __init__(self, profile: TimingProfile | None = None) -> None:
        self._lock = threading.Lock()
        self._waits = Waits()
        self._profile = profile
        self._random = random.Random(profile.seed if profile else None)

    @property
    def profile(self) -> TimingProfile | None:
        return self._profile

    def set(self, profile: TimingProfile | None) -> None:
        with self._lock:
            self._profile = profile
            self._random = random.Random(profile.seed if profile else None)
        self._waits.cancel_all()

    def wait_request(self, method: str, path: str) -> None:
        """Wait the latency this request draws from the profile (none without one)."""
        kind = request_kind(method, path)
        with self._lock:
            latency = self._profile.latency.get(kind) if self._profile and kind else None
            seconds = latency.draw(self._random) if latency else 0.0
        self._wait(seconds)

    def operation_seconds(self, method: str, files: int, size: int) -> float:
        """How long an operation of ``method`` (a key of OPERATION_KINDS) over this much lasts (0: off)."""
        with self._lock:
            duration = self._profile.operations.get(OPERATION_KINDS.get(method, "")) if self._profile else None
        return duration.seconds(files, size) if duration else 0.0

    def wait_until(self, deadline: float) -> None:
        """Wait until ``time.monotonic()`` reaches ``deadline`` (cut short when the profile changes)."""
        self._wait(deadline - time.monotonic())

    def _wait(self, seconds: float) -> None:
        if seconds > 0:
            self._waits.wait(seconds)

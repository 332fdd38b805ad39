"""Concurrency shown by calls that meet, not by a pause that is long enough only on an idle machine."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Gathering:
    """Holds each call until ``size`` calls are in flight at once (or ``timeout`` seconds passed: then every call
    goes through and ``most`` tells how many ever met), and records the most in flight at once."""

    def __init__(self, size: int = 1, timeout: float = 30.0) -> None:
        self.size, self.timeout = size, timeout
        self.in_flight = self.most = 0
        self._lock = threading.Lock()
        self._met = threading.Event()

    def reset(self, size: int | None = None) -> None:
        """A new gathering for the next phase (no call in flight)."""
        with self._lock:
            self.most = 0
            self.size = self.size if size is None else size
            self._met = threading.Event()

    @contextmanager
    def call(self) -> Iterator[None]:
        with self._lock:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
            met = self._met
            if self.in_flight >= self.size:
                met.set()
        try:
            if not met.wait(self.timeout):
                met.set()  # they never met: let the others through rather than hold each for the timeout
            yield
        finally:
            with self._lock:
                self.in_flight -= 1

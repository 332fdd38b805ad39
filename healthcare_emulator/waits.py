"""Sleeps that can be ended early: the latency of a fault rule or of the timing profile, which clearing the
rules or changing the profile must cut short (a held request would otherwise outlive the test that made it)."""

from __future__ import annotations

import threading
import time


class Waits:
    """Every wait begun before ``cancel_all()`` ends at once."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._generation = 0

    def cancel_all(self) -> None:
        with self._changed:
            self._generation += 1
            self._changed.notify_all()

    def wait(self, seconds: float) -> bool:
        """Wait ``seconds``; False when ``cancel_all`` ended the wait early."""
        deadline = time.monotonic() + seconds
        with self._changed:
            generation = self._generation
            while self._generation == generation:
                left = deadline - time.monotonic()
                if left <= 0:
                    return True
                self._changed.wait(left)
        return False

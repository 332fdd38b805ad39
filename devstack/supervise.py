"""What the stack's supervisor decides with: how a process ended, and whether it may be restarted again."""

from __future__ import annotations

import signal
import time
from collections import deque
from dataclasses import dataclass, field


def describe_exit(returncode: int | None) -> str:
    """``killed by signal SIGKILL (9)`` or ``exited with status 3`` (Popen's negative code = signal)."""
    if returncode is None:
        return "is still running"
    if returncode < 0:
        return f"killed by signal {_signal_name(-returncode)} ({-returncode})"
    return f"exited with status {returncode}"


def exit_fields(returncode: int | None) -> dict[str, object]:
    """The same, as structured log fields."""
    if returncode is not None and returncode < 0:
        return {"signal": _signal_name(-returncode), "signal_number": -returncode}
    return {"exit_status": returncode}


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return "unknown signal"


@dataclass
class RestartBudget:
    """At most ``limit`` restarts within any ``window_seconds``: more means a crash loop, and the stack gives up."""

    limit: int
    window_seconds: float
    _restarts: deque[float] = field(default_factory=deque, repr=False)

    def take(self, now: float | None = None) -> bool:
        """Record one restart and return True, or return False when the budget is spent."""
        now = time.monotonic() if now is None else now
        while self._restarts and now - self._restarts[0] > self.window_seconds:
            self._restarts.popleft()
        if len(self._restarts) >= self.limit:
            return False
        self._restarts.append(now)
        return True

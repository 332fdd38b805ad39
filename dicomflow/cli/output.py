"""What the CLI prints: aligned tables, JSON, a progress line on stderr, durations."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, TextIO

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns padded to their widest cell; '(none)' under the headers when there is no row."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()
    rule = "  ".join("-" * w for w in widths)
    body = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join([line, rule, *body]) if body else f"{line}\n  (none)"


def as_json(value: Any) -> str:
    return json.dumps(value, indent=1, sort_keys=True, default=str)


def duration(raw: str) -> timedelta:
    """``90s``, ``15m``, ``2h``, ``7d``."""
    match = _DURATION.match(raw.strip())
    if not match:
        raise ValueError(f"{raw!r} is not a duration such as 90s, 15m, 2h or 7d")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


class Progress:
    """``what: done/total (rate/s, ETA)`` on one rewritten stderr line while work runs, then a final line."""

    def __init__(self, what: str, total: int | None = None, stream: TextIO | None = None, quiet: bool = False) -> None:
        self.what, self.total, self.done, self.quiet = what, total, 0, quiet
        self._stream = stream or sys.stderr
        self._tty = self._stream.isatty()
        self._started = self._shown = time.monotonic()

    def advance(self, count: int = 1, **extra: int) -> None:
        self.done += count
        now = time.monotonic()
        if now - self._shown >= (0.2 if self._tty else 5.0):
            self._shown = now
            self._write(self._line(extra), final=False)

    def finish(self, **extra: int) -> None:
        self._write(self._line(extra), final=True)

    def _line(self, extra: dict[str, int]) -> str:
        elapsed = max(time.monotonic() - self._started, 1e-9)
        rate = self.done / elapsed
        of = f"/{self.total}" if self.total is not None else ""
        eta = ""
        if self.total and rate > 0 and self.done < self.total:
            eta = f", ETA {ago((self.total - self.done) / rate)}"
        more = "".join(f", {key.replace('_', ' ')} {value}" for key, value in extra.items())
        return f"{self.what}: {self.done}{of} ({rate:.0f}/s{eta}){more}"

    def _write(self, line: str, *, final: bool) -> None:
        if self.quiet:
            return
        if self._tty:
            self._stream.write("\r\033[K" + line + ("\n" if final else ""))
        elif final or line:
            self._stream.write(line + "\n")
        self._stream.flush()

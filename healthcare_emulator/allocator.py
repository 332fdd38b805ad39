"""The C allocator under the emulator's threads: give freed heap memory back to the system now and then.

Every request runs on a thread of its own, every import on 8 reader threads, and glibc gives threads their
own heaps (arenas, up to 8 per core). A big request (a whole-store listing, a batch's retrieves) leaves its
peak in whichever arena served it; freed, that memory stays in the arena for the next request there, so
the process keeps the sum of the arenas' high-water marks, which grows over hours as requests land on other
arenas and the store grows. Measured (``bench.emulator_rss``, docs/benchmarks.md): the C heap's free bytes
grew from 110 to 170+ MiB in 4 minutes while its bytes in use stayed at 20-30 MiB and Python's live
allocations (tracemalloc) at under 5 MiB.

``Trimmer`` calls glibc's ``malloc_trim(0)`` every ``seconds`` on a daemon thread: it hands every arena's
free pages back (``madvise``), which costs a walk of the free lists (milliseconds here). Elsewhere than
glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


def find_malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None (musl, macOS, Windows)."""
    name = ctypes.util.find_library("c")
    try:
        function = getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    except OSError:
        return None
    if function is None:
        return None
    function.argtypes = [ctypes.c_size_t]
    function.restype = ctypes.c_int
    trim: Callable[[int], int] = function
    return trim


class Trimmer:
    """Every ``seconds``, ``trim(0)`` (glibc's malloc_trim by default), until ``stop()``."""

    def __init__(self, seconds: float, trim: Callable[[int], int] | None = None) -> None:
        self.seconds = seconds
        self.trims = 0
        self._trim = trim if trim is not None else find_malloc_trim()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def available(self) -> bool:
        return self._trim is not None

    def start(self) -> Trimmer:
        if self._trim is None or self.seconds <= 0:
            log.debug("malloc_trim is not available or turned off: freed heap memory stays with the process")
            return self
        self._thread = threading.Thread(target=self._run, name="malloc-trim", daemon=True)
        self._thread.start()
        return self

    def trim_now(self) -> None:
        if self._trim is not None:
            self._trim(0)
            self.trims += 1

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stopped.wait(self.seconds):
            self.trim_now()

"""The C allocator under the emulator's threads: few heaps, and freed heap memory given back now and then.

Every request runs on a thread of its own, every import on 8 reader threads, and glibc gives threads heaps
of their own (arenas, up to 8 per core) that keep what they once needed. Measured with ``bench.emulator_rss``
(docs/benchmarks.md): over 4 minutes of soak-like traffic the RSS of glibc's thread arenas grew from 4 to
28 MiB while everything else stayed flat: Python's live allocations (tracemalloc) under 5 MiB, the C heap's
bytes in use 16 MiB, pymalloc's arenas 10 MiB, shared libraries 39 MiB. ``malloc_trim`` every 30 s alone
did not stop it; two arenas slowed it (RSS +5 % instead of +31 % over minutes 2 -> 6) but their one thread
arena still grew, 1.1 -> 10.1 MiB over 15 minutes; one arena (every thread on the main heap) kept the RSS
flat from minute 3, with no difference in ``bench.emulator_throughput`` beyond its noise.

``limit_arenas(n)`` is glibc's ``mallopt(M_ARENA_MAX, n)`` (what ``MALLOC_ARENA_MAX=n`` sets): it must run
before the first thread other than the main one allocates. ``Trimmer`` calls ``malloc_trim(0)`` every
``seconds`` on a daemon thread: it hands every arena's free pages back (``madvise``), at the cost of a walk
of the free lists (milliseconds here). Elsewhere than glibc both do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


_M_ARENA_MAX = -8  # glibc's malloc.h


def libc() -> ctypes.CDLL | None:
    """The C library, or None where it cannot be loaded."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


def limit_arenas(count: int) -> bool:
    """At most ``count`` glibc malloc arenas from now on (0: glibc's default); False where it cannot be set."""
    mallopt = getattr(libc(), "mallopt", None)
    if mallopt is None or count <= 0:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_ARENA_MAX, count))


def find_malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None (musl, macOS, Windows)."""
    function = getattr(libc(), "malloc_trim", None)
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

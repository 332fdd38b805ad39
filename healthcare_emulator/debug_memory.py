"""Debug only: the emulator's own memory while it runs, for ``bench.emulator_rss``.

Served at ``/emulator/memory`` only when the emulator is started with ``HEALTHCARE_EMULATOR_DEBUG_MEMORY=1``
(otherwise that path is a 404 like any unknown one). ``GET`` answers VmRSS, the thread count, glibc's heap
figures and, when tracemalloc runs, its traced current size and the peak since the previous call. ``POST``
with ``{"trace": 25}`` starts tracemalloc (25 frames; cheaper than ``PYTHONTRACEMALLOC=25``, under which the
start-up imports take a minute);
``{"snapshot": true}`` also writes a tracemalloc snapshot under ``DATA_DIR/memory-snapshots/`` and answers
its path; ``{"trim": true}`` calls glibc's ``malloc_trim(0)`` first and answers VmRSS before and after (how
much of the RSS was freed memory the allocator kept). Sizes only: nothing about the stored data.
"""

from __future__ import annotations

import ctypes
import gc
import itertools
import threading
import tracemalloc
from pathlib import Path
from typing import Any

from healthcare_emulator.allocator import find_malloc_trim, libc

_counter = itertools.count(1)


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                     "keepcost")
    ]  # fmt: skip


def malloc_info() -> dict[str, int]:
    """glibc's heap figures in KiB (mallinfo2, glibc 2.33+): bytes in use, free bytes it keeps, mmapped
    bytes; {} elsewhere. Free bytes that grow while the bytes in use stay flat are fragmentation."""
    found = libc()
    function = getattr(found, "mallinfo2", None)
    if function is None:
        return {}
    function.restype = _MallInfo2
    info = function()
    return {"heapKiB": info.arena // 1024, "inUseKiB": info.uordblks // 1024, "freeKiB": info.fordblks // 1024,
            "mmappedKiB": info.hblkhd // 1024}  # fmt: skip


def rss_kib() -> int:
    """This process's VmRSS in KiB (0 where /proc is missing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


_ARENA_ALIGN = 64 * 1024 * 1024  # glibc's thread arenas (HEAP_MAX_SIZE) start on 64 MiB boundaries


def rss_by_kind() -> dict[str, int]:
    """VmRSS in KiB by kind of mapping (/proc/self/smaps): shared libraries, the main heap, glibc's thread
    arenas, 1 MiB anonymous maps (pymalloc's arenas), other anonymous maps (big blocks, thread stacks)."""
    kinds: dict[str, int] = {}
    kind = "other"
    try:
        lines = Path("/proc/self/smaps").read_text().splitlines()
    except OSError:
        return {}
    for line in lines:
        parts = line.split()
        if parts and "-" in parts[0] and not parts[0].endswith(":"):
            low, high = (int(value, 16) for value in parts[0].split("-"))
            path = parts[5] if len(parts) > 5 else ""
            if path == "[heap]":
                kind = "heap"
            elif path:
                kind = "files"
            elif low % _ARENA_ALIGN == 0:
                kind = "threadArenas"
            elif high - low == 1024 * 1024:
                kind = "pymallocArenas"
            else:
                kind = "otherAnonymous"
        elif parts and parts[0] == "Rss:":
            kinds[kind] = kinds.get(kind, 0) + int(parts[1])
    return kinds


def malloc_trim() -> bool:
    """Return the C heap's free memory to the system (glibc only); False where there is no malloc_trim."""
    trim = find_malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def report(data_dir: Path, *, trace: int = 0, snapshot: bool = False, trim: bool = False) -> dict[str, Any]:
    """The figures ``/emulator/memory`` answers (see the module docstring)."""
    if trace and not tracemalloc.is_tracing():
        tracemalloc.start(trace)
    answer: dict[str, Any] = {
        "rssKiB": rss_kib(),
        "rssByKindKiB": rss_by_kind(),
        "threads": threading.active_count(),
        "malloc": malloc_info(),
    }
    if trim:
        gc.collect()
        answer["trimmed"] = malloc_trim()
        answer["rssKiBAfterTrim"] = rss_kib()
    if tracemalloc.is_tracing():
        current, peak = tracemalloc.get_traced_memory()
        answer["tracedKiB"] = current // 1024
        answer["tracedPeakKiB"] = peak // 1024
        tracemalloc.reset_peak()
        if snapshot:
            folder = data_dir / "memory-snapshots"
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"snapshot-{next(_counter):03d}.pickle"
            tracemalloc.take_snapshot().dump(str(path))
            answer["snapshot"] = str(path)
    return answer

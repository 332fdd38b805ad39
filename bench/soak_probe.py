"""Resource use of the stack's processes, from /proc: RSS, threads and open files (sockets counted apart) of
each process group the stack started (a server's workers included: every stand-in is started in a session of
its own)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class Usage:
    rss_kib: int = 0
    threads: int = 0
    fds: int = 0
    processes: int = 0
    sockets: int = 0  # of the fds: connections and listeners (a client's keep-alive pool grows to its peak)

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.rss_kib + other.rss_kib, self.threads + other.threads, self.fds + other.fds,
                     self.processes + other.processes, self.sockets + other.sockets)  # fmt: skip


def parse_status(text: str) -> tuple[int, int]:
    """(VmRSS in KiB, Threads) from the text of /proc/PID/status (0 for a field that is missing)."""
    values = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "Threads"):
            values[key] = int(value.split()[0])
    return values.get("VmRSS", 0), values.get("Threads", 0)


def parse_pgrp(stat: str) -> int:
    """The process group of /proc/PID/stat (the fields after the command name in parentheses)."""
    return int(stat.rsplit(")", 1)[1].split()[2])


def process_usage(pid: int, proc: Path = PROC) -> Usage:
    """One process's usage, or zero usage when it is gone (or not ours to read)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        rss, threads = parse_status((proc / str(pid) / "status").read_text())
        fd_dir = proc / str(pid) / "fd"
        fds = os.listdir(fd_dir)
        return Usage(rss, threads, len(fds), 1, sum(1 for fd in fds if _is_socket(fd_dir / fd)))
    return Usage()


def _is_socket(fd: Path) -> bool:
    with contextlib.suppress(OSError):
        return os.readlink(fd).startswith("socket:")
    return False


def groups_usage(leaders: set[int], proc: Path = PROC) -> dict[int, Usage]:
    """Usage summed over each process group whose leader's PID is in ``leaders``."""
    found = {leader: Usage() for leader in leaders}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            group = parse_pgrp((entry / "stat").read_text())
            if group in found:
                found[group] = found[group] + process_usage(int(entry.name), proc)
    return found


def java_live_objects(pid: int, class_name: str) -> tuple[int, int] | None:
    """(instances of ``class_name``, bytes of the whole live heap) in a JVM, after the full GC that jcmd's class
    histogram runs first; None without jcmd (a JDK tool) or when the JVM does not answer."""
    jcmd = shutil.which("jcmd")
    if jcmd is None:
        return None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        command = [jcmd, str(pid), "GC.class_histogram"]
        out = subprocess.run(command, check=False, capture_output=True, text=True, timeout=120)
        return parse_histogram(out.stdout, class_name)
    return None


def parse_histogram(text: str, class_name: str) -> tuple[int, int] | None:
    """(instances of ``class_name``, total bytes) from a class histogram's text (rows, then ``Total N B``)."""
    instances, total = 0, None
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[3] == class_name:
            instances = int(fields[1])
        elif len(fields) == 3 and fields[0] == "Total":
            total = int(fields[2])
    return None if total is None else (instances, total)

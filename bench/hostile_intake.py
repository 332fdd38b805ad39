"""Peak memory per event for the worst inputs intake and flush meet (python -m bench.hostile_intake).

Traced with tracemalloc around one event each: a deflate bomb (1 MiB upload inflating to 1 GiB), a header that
just fits MAX_HEADER_BYTES, and the largest poison record Pub/Sub can carry (deep nesting, huge strings). The
baseline is what the bomb's data set would cost inflated in full (the behaviour before the cap)."""

from __future__ import annotations

import contextlib
import platform
import tracemalloc
from collections.abc import Callable
from functools import partial

from devstack.hostile import deflate_bomb, poison_pending_messages
from dicomflow.dicom.sniff import sniff_header
from dicomflow.errors import MalformedEventError, NotDicomError
from dicomflow.messages.records import PendingRecord, parse_pending

MAX_HEADER_BYTES = 16 * 1024 * 1024


def _peak(work: Callable[[], object]) -> float:
    tracemalloc.start()
    with contextlib.suppress(NotDicomError, MalformedEventError):
        work()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def main() -> None:
    print(f"machine: {platform.machine()} {platform.python_implementation()} {platform.python_version()}")
    for inflated in (256 << 20, 1 << 30):
        bomb = deflate_bomb(inflated)
        mib = _peak(lambda b=bomb: sniff_header(lambda s, e: b[s:e], len(b), first_read=65536,  # type: ignore[misc]
                                                max_bytes=MAX_HEADER_BYTES))  # fmt: skip
        full = inflated / 2**20
        print(f"deflate bomb {len(bomb) / 2**20:.1f} MiB -> {full:.0f} MiB inflated: peak {mib:.1f} MiB per event "
              f"(uncapped at least {full:.0f} MiB: {full / mib:.0f}x less)")  # fmt: skip
    good = PendingRecord("src-bucket", "up/a.dcm", "1", 10, None, "1.2", "1.2.3", "1.2.3.4",
                         "1.2.840.10008.1.2.1", "CT", "2026-11-28T12:00:00+00:00").to_json()  # fmt: skip
    poison = {**poison_pending_messages(good), "deep 10 MiB": b"[" * (5 << 20) + b"]" * (5 << 20),
              "string 10 MiB": b'{"version": 1, "name": "' + b"x" * (10 << 20) + b'"}'}  # fmt: skip
    for kind, data in poison.items():
        peak = _peak(partial(parse_pending, data))
        print(f"poison record ({kind}, {len(data) / 2**10:.0f} KiB): peak {peak:.1f} MiB")


if __name__ == "__main__":
    main()

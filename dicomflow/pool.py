"""A bounded thread pool for I/O-bound calls: staged copies and their deletes, the CLI's header reads and its
reads of small state objects, reconcile's store queries. At most ``WORKERS`` calls run at once unless the caller
asks for another bound (staged copies: ``staging.COPY_WORKERS``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

WORKERS = 16


def bounded(work: Callable[[T], R], items: Iterable[T], *, workers: int = WORKERS) -> list[R]:
    """``work`` over ``items`` on at most ``workers`` threads, results in order; the first exception propagates."""
    items = list(items)
    if len(items) <= 1:
        return [work(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(workers, len(items)), thread_name_prefix="bounded") as pool:
        return list(pool.map(work, items))

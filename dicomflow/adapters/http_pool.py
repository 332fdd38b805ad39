"""Pooled HTTP sessions that keep as many connections as their threads use, and drop the ones left idle.

requests keeps 10 connections per host, so a process whose threads call one host at once would open and drop
connections on every call; the sessions here keep up to ``connections`` per host instead. A pool only grows,
though: a burst of concurrency leaves its connections open for the life of the process. So each pool closes a
connection that has waited unused longer than ``IDLE_SECONDS`` (the next burst reconnects), which keeps a
process's open sockets near the concurrency it has now rather than the most it ever met, and closes a kept
connection before a server's own idle timeout can close it under a request that reuses it.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

IDLE_SECONDS = 60.0
CONNECTIONS = 128  # per host: at least a process's request threads (THREADS) and its reconcile pool

Clock = Callable[[], float]


def pooled(
    session: requests.Session,
    *,
    connections: int = CONNECTIONS,
    idle_seconds: float | None = None,
    clock: Clock = time.monotonic,
) -> requests.Session:
    """``session`` with pools of up to ``connections`` per host that close connections idle ``idle_seconds``
    (default: IDLE_SECONDS, read at the call)."""
    idle = IDLE_SECONDS if idle_seconds is None else idle_seconds
    adapter = IdleClosingAdapter(pool_connections=4, pool_maxsize=connections, idle_seconds=idle, clock=clock)
    for scheme in ("http://", "https://"):
        session.mount(scheme, adapter)
    return session


class IdleClosingAdapter(HTTPAdapter):
    """An HTTPAdapter whose connection pools close the connections left unused longer than ``idle_seconds``."""

    def __init__(self, *, idle_seconds: float, clock: Clock, **kwargs: Any) -> None:
        queue_class = _idle_closing_queue(idle_seconds, clock)
        self._pool_classes = {
            "http": type("IdleClosingHTTPConnectionPool", (HTTPConnectionPool,), {"QueueCls": queue_class}),
            "https": type("IdleClosingHTTPSConnectionPool", (HTTPSConnectionPool,), {"QueueCls": queue_class}),
        }
        super().__init__(**kwargs)  # builds the pool manager (init_poolmanager), so the classes come first

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = self._pool_classes


def _idle_closing_queue(idle_seconds: float, clock: Clock) -> type[queue.LifoQueue[Any]]:
    class IdleClosingQueue(queue.LifoQueue[Any]):
        """urllib3's pool queue (last in, first out; ``None`` is a free slot) that closes idle connections.

        Each entry keeps the time it was put back. The connection taken is never one that waited longer than
        ``idle_seconds`` (it is closed and its slot given instead); and at most every tenth of ``idle_seconds``
        (so that a request does not scan the whole pool) a take closes every such connection in the pool.
        Queue calls these methods with its lock held.
        """

        def _init(self, maxsize: int) -> None:
            self.queue: list[tuple[Any, float]] = []
            self.swept = clock()

        def _qsize(self) -> int:
            return len(self.queue)

        def _put(self, item: Any) -> None:
            self.queue.append((item, clock()))

        def _get(self) -> Any:
            now = clock()
            if now - self.swept >= idle_seconds / 10:
                self.swept = now
                self.queue = [(self._closed_if_idle(entry, now), entry[1]) for entry in self.queue]
            return self._closed_if_idle(self.queue.pop(), now)

        @staticmethod
        def _closed_if_idle(entry: tuple[Any, float], now: float) -> Any:
            """The entry's connection, or None (a free slot) once it is closed for having waited too long."""
            connection, since = entry
            if connection is not None and now - since > idle_seconds:
                connection.close()
                return None
            return connection

    return IdleClosingQueue

"""A latency-injecting HTTP proxy in front of fake-gcs-server: every Cloud Storage call of the pipeline (reads,
listings, rewrites, writes, deletes) waits a latency drawn from the timing profile before it is forwarded, so the
functions see the cloud's per-call cost. It forwards the request as is and the whole answer back.

    proxy = LatencyProxy(("127.0.0.1", 0), "http://127.0.0.1:4443", {"rewrite": Percentiles(50, 200), ...})
    proxy.start(); ...; proxy.stop()
"""

from __future__ import annotations

import math
import random
import threading
import time

from devstack.forwarding import ForwardingProxy
from devstack.timing import Percentiles

_Z99 = 2.3263478740408408


def call_kind(method: str, path: str) -> str:
    """``rewrite`` for objects.rewrite and copyTo, ``other`` for every other call."""
    return "rewrite" if method == "POST" and ("/rewriteTo/" in path or "/copyTo/" in path) else "other"


def draw(latency: Percentiles, rng: random.Random) -> float:
    """Seconds from a log-normal with that median and 99th percentile."""
    if latency.p50_ms <= 0:
        return 0.0
    sigma = math.log(max(latency.p99_ms, latency.p50_ms) / latency.p50_ms) / _Z99
    return rng.lognormvariate(math.log(latency.p50_ms), sigma) / 1000


class LatencyProxy(ForwardingProxy):
    """Serves on ``address``, forwards to ``target`` (http://host:port) after the drawn latency; counts calls."""

    def __init__(
        self, address: tuple[str, int], target: str, latency: dict[str, Percentiles], seed: int | None = None
    ) -> None:
        super().__init__(address, target, name="gcs-latency-proxy")
        self.latency = latency
        self.calls: dict[str, int] = {"rewrite": 0, "other": 0}
        self.waited: dict[str, float] = {"rewrite": 0.0, "other": 0.0}
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    def before_forward(self, method: str, path: str) -> None:
        kind = call_kind(method, path)
        with self._lock:
            latency = self.latency.get(kind)
            seconds = draw(latency, self._random) if latency else 0.0
            self.calls[kind] += 1
            self.waited[kind] += seconds
        time.sleep(seconds)

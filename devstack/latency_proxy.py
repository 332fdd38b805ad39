"""A latency-injecting HTTP proxy in front of fake-gcs-server: every Cloud Storage call of the pipeline (reads,
listings, rewrites, writes, deletes) waits a latency drawn from the timing profile before it is forwarded, so the
functions see the cloud's per-call cost. It forwards the request as is and the whole answer back.

    proxy = LatencyProxy(("127.0.0.1", 0), "http://127.0.0.1:4443", {"rewrite": Percentiles(50, 200), ...})
    proxy.start(); ...; proxy.stop()
"""

from __future__ import annotations

import http.client
import math
import random
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from devstack.timing import Percentiles

_Z99 = 2.3263478740408408
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
                         "proxy-authorization", "proxy-authenticate", "content-length"})  # fmt: skip


def call_kind(method: str, path: str) -> str:
    """``rewrite`` for objects.rewrite and copyTo, ``other`` for every other call."""
    return "rewrite" if method == "POST" and ("/rewriteTo/" in path or "/copyTo/" in path) else "other"


def draw(latency: Percentiles, rng: random.Random) -> float:
    """Seconds from a log-normal with that median and 99th percentile."""
    if latency.p50_ms <= 0:
        return 0.0
    sigma = math.log(max(latency.p99_ms, latency.p50_ms) / latency.p50_ms) / _Z99
    return rng.lognormvariate(math.log(latency.p50_ms), sigma) / 1000


class LatencyProxy:
    """Serves on ``address``, forwards to ``target`` (http://host:port) after the drawn latency; counts calls."""

    def __init__(
        self, address: tuple[str, int], target: str, latency: dict[str, Percentiles], seed: int | None = None
    ) -> None:
        parsed = urllib.parse.urlsplit(target)
        self.target = (parsed.hostname or "127.0.0.1", parsed.port or 80)
        self.latency = latency
        self.calls: dict[str, int] = {"rewrite": 0, "other": 0}
        self.waited: dict[str, float] = {"rewrite": 0.0, "other": 0.0}
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(address, self._handler())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> LatencyProxy:
        self._thread = threading.Thread(target=self._server.serve_forever, name="gcs-latency-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _delay(self, method: str, path: str) -> float:
        kind = call_kind(method, path)
        with self._lock:
            latency = self.latency.get(kind)
            seconds = draw(latency, self._random) if latency else 0.0
            self.calls[kind] += 1
            self.waited[kind] += seconds
        return seconds

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                time.sleep(proxy._delay(self.command, self.path))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                connection = http.client.HTTPConnection(*proxy.target, timeout=300)
                try:
                    connection.request(self.command, self.path, body=body, headers=headers)
                    answer = connection.getresponse()
                    data = answer.read()
                finally:
                    connection.close()
                self.send_response(answer.status, answer.reason)
                for key, value in answer.getheaders():
                    if key.lower() not in _HOP_BY_HOP:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _forward  # noqa: N815 - http.server's names

        return Handler

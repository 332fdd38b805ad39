"""The pooled sessions keep connections for reuse and close the ones left idle (a real HTTP server on 127.0.0.1)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from dicomflow.adapters.http_pool import _idle_closing_queue, pooled

CONCURRENT = 5


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.opened = 0
        self.closed = 0
        self.in_flight = threading.Barrier(CONCURRENT, timeout=10)
        self.wait_for_all = False

    @property
    def open_connections(self) -> int:
        with self.lock:
            return self.opened - self.closed


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.opened += 1

    def finish(self) -> None:
        super().finish()
        with self.server.lock:
            self.server.closed += 1

    def do_GET(self) -> None:
        if self.server.wait_for_all:
            self.server.in_flight.wait()  # every request in flight at once: one connection each
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[_Server]:
    server = _Server()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _burst(session: requests.Session, url: str, server: _Server) -> None:
    server.wait_for_all = True
    with ThreadPoolExecutor(CONCURRENT) as pool:
        assert all(r.status_code == 200 for r in pool.map(lambda _: session.get(url), range(CONCURRENT)))
    server.wait_for_all = False


def _until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_a_burst_s_connections_are_kept_for_reuse_while_fresh(server: _Server) -> None:
    clock = _Clock()
    session, url = pooled(requests.Session(), idle_seconds=60, clock=clock), f"http://127.0.0.1:{server.server_port}/"
    _burst(session, url, server)
    assert server.open_connections == CONCURRENT
    clock.now += 59
    for _ in range(3):
        assert session.get(url).status_code == 200
    assert server.opened == CONCURRENT  # reused, none opened
    assert server.open_connections == CONCURRENT
    session.close()


def test_connections_left_idle_are_closed_at_the_next_request(server: _Server) -> None:
    clock = _Clock()
    session, url = pooled(requests.Session(), idle_seconds=60, clock=clock), f"http://127.0.0.1:{server.server_port}/"
    _burst(session, url, server)
    clock.now += 61
    assert session.get(url).status_code == 200
    _until(lambda: server.open_connections == 1)
    assert server.open_connections == 1  # all five closed; the request opened a new one
    assert server.opened == CONCURRENT + 1
    _burst(session, url, server)  # a new burst reconnects as it needs
    assert server.open_connections == CONCURRENT
    session.close()


class _Connection:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_a_take_between_sweeps_never_gives_a_connection_left_idle() -> None:
    clock = _Clock()
    pool = _idle_closing_queue(60, clock)(maxsize=4)
    older, newer = _Connection(), _Connection()
    pool.put(older)
    pool.put(newer)
    clock.now += 55  # a sweep is due: nothing has waited 60 s yet
    assert pool.get() is newer
    clock.now += 5.9  # no sweep due (every 6 s), but the connection on top has now waited 60.9 s
    assert pool.get() is None  # a free slot instead: the pool opens a new connection
    assert older.closed and not newer.closed

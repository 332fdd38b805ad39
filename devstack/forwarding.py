"""An HTTP forwarding proxy in a background thread: the base of the stack's Cloud Storage latency proxy and of
the tests' Cloud Storage fault proxy. A subclass decides per request (``before_forward``) whether to wait,
answer itself, or let the request through to ``upstream`` unchanged; the whole answer is sent back."""

from __future__ import annotations

import http.client
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
                         "proxy-authorization", "proxy-authenticate", "content-length"})  # fmt: skip


class ForwardingProxy:
    """Serves on ``address`` (127.0.0.1, port 0 for a free one) and forwards to ``upstream`` (http://host:port)."""

    def __init__(self, address: tuple[str, int], upstream: str, *, name: str, timeout: float = 300) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        self.upstream = (parsed.hostname or "127.0.0.1", parsed.port or 80)
        self._timeout = timeout
        self._name = name
        self._server = ThreadingHTTPServer(address, self._handler())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._server.serve_forever, name=self._name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def before_forward(self, method: str, path: str) -> tuple[int, dict[str, str], bytes] | None:
        """Called before each request is forwarded (it may wait); an answer returned here is sent instead."""
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                own = proxy.before_forward(self.command, self.path)
                if own is not None:
                    self._answer(*own)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                connection = http.client.HTTPConnection(*proxy.upstream, timeout=proxy._timeout)
                try:
                    connection.request(self.command, self.path, body=body, headers=headers)
                    answer = connection.getresponse()
                    data = answer.read()
                finally:
                    connection.close()
                kept = {k: v for k, v in answer.getheaders() if k.lower() not in _HOP_BY_HOP}
                self._answer(answer.status, kept, data, answer.reason)

            def _answer(self, status: int, headers: dict[str, str], data: bytes, reason: str | None = None) -> None:
                self.send_response(status, reason)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _forward  # noqa: N815 - http.server's names

        return Handler

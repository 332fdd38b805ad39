"""Permanent Cloud Storage faults for integration tests: fake-gcs-server has no IAM, so a small HTTP proxy in
front of it answers the requests a rule matches the way Cloud Storage refuses a caller without a role (403,
with Google's JSON error body) and forwards everything else unchanged. The pipeline under test talks to the
proxy (STORAGE_EMULATOR_HOST); the test itself keeps talking to fake-gcs-server directly."""

from __future__ import annotations

import http.client
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authorization"}


@dataclass
class DenyRule:
    """Refuse every request whose method is ``method`` and whose path (with query) matches ``path``."""

    method: str
    path: str
    status: int = 403
    fired: int = 0


@dataclass
class StorageFaults:
    url: str
    rules: list[DenyRule] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def deny(self, method: str, path: str, status: int = 403) -> DenyRule:
        rule = DenyRule(method, path, status)
        with self.lock:
            self.rules.append(rule)
        return rule

    def match(self, method: str, path: str) -> DenyRule | None:
        with self.lock:
            for rule in self.rules:
                if rule.method == method and re.search(rule.path, path):
                    rule.fired += 1
                    return rule
        return None


@contextmanager
def storage_faults(upstream: str) -> Iterator[StorageFaults]:
    """A proxy to ``upstream`` (fake-gcs-server's URL) on a free 127.0.0.1 port, for the block."""
    target = urlsplit(upstream)
    faults = StorageFaults("")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            rule = faults.match(self.command, self.path)
            if rule is not None:
                reason = {"code": rule.status, "message": "caller does not have storage.objects.get access",
                          "errors": [{"reason": "forbidden", "message": "permission denied"}]}  # fmt: skip
                payload = json.dumps({"error": reason}).encode()
                self.send_response(rule.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return
            connection = http.client.HTTPConnection(target.hostname or "127.0.0.1", target.port, timeout=120)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP and k.lower() != "host"}
            headers["Host"] = target.netloc
            try:
                connection.request(self.command, self.path, body=body, headers=headers)
                response = connection.getresponse()
                data = response.read()
            finally:
                connection.close()
            self.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in _HOP_BY_HOP and key.lower() != "content-length":
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle  # noqa: N815 - http.server's names

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    faults.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="gcs-faults", daemon=True)
    thread.start()
    try:
        yield faults
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)

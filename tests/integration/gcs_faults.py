"""Permanent Cloud Storage faults for integration tests: fake-gcs-server has no IAM, so a small HTTP proxy in
front of it answers the requests a rule matches the way Cloud Storage refuses a caller without a role (403,
with Google's JSON error body) and forwards everything else unchanged. The pipeline under test talks to the
proxy (STORAGE_EMULATOR_HOST); the test itself keeps talking to fake-gcs-server directly."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from devstack.forwarding import ForwardingProxy


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


class _FaultProxy(ForwardingProxy):
    def __init__(self, upstream: str, faults: StorageFaults) -> None:
        super().__init__(("127.0.0.1", 0), upstream, name="gcs-faults", timeout=120)
        self.faults = faults

    def before_forward(self, method: str, path: str) -> tuple[int, dict[str, str], bytes] | None:
        rule = self.faults.match(method, path)
        if rule is None:
            return None
        reason = {"code": rule.status, "message": "caller does not have storage.objects.get access",
                  "errors": [{"reason": "forbidden", "message": "permission denied"}]}  # fmt: skip
        return rule.status, {"Content-Type": "application/json"}, json.dumps({"error": reason}).encode()


@contextmanager
def storage_faults(upstream: str) -> Iterator[StorageFaults]:
    """A proxy to ``upstream`` (fake-gcs-server's URL) on a free 127.0.0.1 port, for the block."""
    faults = StorageFaults("")
    proxy = _FaultProxy(upstream, faults).start()
    faults.url = proxy.url
    try:
        yield faults
    finally:
        proxy.stop()

"""What every part of the batch ledger shares: the object store, the state bucket, the ledger's prefixes, its
clock and claim timeout; a batch's object paths and the conditional claim that lets one delivery act once."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from dicomflow.ledger.manifest import Claim
from dicomflow.messages.records import PendingRecord
from dicomflow.ports import ObjectStore


class LedgerState:
    """The ledger in ``gs://{bucket}/{prefix}``: the base of each of its parts (``dicomflow.ledger.store``)."""

    def __init__(
        self, store: ObjectStore, bucket: str, prefix: str, *, now: Callable[[], datetime], claim_timeout: float = 300.0
    ) -> None:
        self._store = store
        self.bucket = bucket
        self._root = f"{prefix}batches/"
        self._inflight = f"{prefix}inflight/"
        self._refused = f"{prefix}refused/"
        self._now = now
        self._claim_timeout = claim_timeout

    def _path(self, batch_id: str, *parts: str) -> str:
        return "/".join([f"{self._root}{batch_id}", *parts])

    def _claim(self, batch_id: str, path: str, body: Mapping[str, Any], claiming: str) -> Claim | None:
        """Create ``path``, or take over a claim in state ``claiming`` older than the claim timeout."""
        existing = self._store.read_json(self.bucket, path)
        expected = 0
        if existing is not None:
            state, generation = existing
            if state.get("status") != claiming or not self.claim_expired(state.get("claimed")):
                return None  # done, running, or being done by another delivery right now
            expected = generation
        written = self._store.put_json(self.bucket, path, body, if_generation=expected)
        return None if written is None else Claim(batch_id, path, written)

    def claim_expired(self, claimed: str | None) -> bool:
        """A claim taken at ``claimed`` is older than the claim timeout (its holder is taken for gone), or was
        released (no time): another delivery may take it over."""
        return self._since(claimed) >= self._claim_timeout

    def _since(self, value: Any) -> float:
        try:
            return (self._now() - datetime.fromisoformat(str(value))).total_seconds()
        except ValueError:
            return float("inf")


def record_key(record: PendingRecord) -> str:
    """The key of one file generation in the ledger's object names."""
    return hashlib.sha256(f"{record.bucket}/{record.name}#{record.generation}".encode()).hexdigest()[:32]


def operation_id(name: str) -> str:
    """The last segment of an operation's name: how the ledger names its objects about that operation."""
    return name.rpartition("/")[2]

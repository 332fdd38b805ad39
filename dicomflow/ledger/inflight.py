"""The in-flight marks: ``{STATE_PREFIX}inflight/{STORE_KEY}/{EPOCH}-{OP}`` for each import of a store that was
started and not yet reconciled, so flush counts a store's running imports from one small listing."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from dicomflow.ledger.manifest import Manifest
from dicomflow.ledger.state import LedgerState, operation_id


class InFlightMarks(LedgerState):
    """Marks a batch's imports in flight, counts a store's marks, clears one once its import is reconciled."""

    def mark_in_flight(self, manifest: Manifest) -> None:
        """Mark the batch's imports in flight: flush writes them once their watches are published, so a failed
        publish leaves no mark holding a concurrency slot for an import nobody follows."""
        started = _epoch(manifest.created)
        for entry in manifest.imports:
            self._store.write_text(self.bucket, self._inflight_path(manifest.store, started, entry.operation), "")

    def imports_in_flight(self, store: str, max_age: float) -> int:
        """Imports of ``store`` started by this pipeline and not reconciled, younger than ``max_age`` seconds."""
        return len(self.in_flight(store, max_age))

    def in_flight(self, store: str, max_age: float) -> list[tuple[datetime, str]]:
        """(start time, operation id) of each import ``imports_in_flight`` counts, oldest first."""
        prefix = f"{self._inflight}{_store_key(store)}/"
        listing = self._store.list_objects(self.bucket, prefix, recursive=False, limit=10_000)
        oldest = self._now().timestamp() - max_age
        found = []
        for name in listing.names:
            epoch, _, operation = name[len(prefix) :].partition("-")
            if epoch.isdigit() and int(epoch) >= oldest:
                found.append((datetime.fromtimestamp(int(epoch), UTC), operation))
        return sorted(found)

    def _clear_in_flight(self, manifest: Manifest, operation: str) -> None:
        """The batch's import ``operation`` is reconciled: it holds no slot any more."""
        self._store.delete(self.bucket, self._inflight_path(manifest.store, _epoch(manifest.created), operation))

    def _inflight_path(self, store: str, started: int, operation: str) -> str:
        return f"{self._inflight}{_store_key(store)}/{started:012d}-{operation_id(operation)}"


def _store_key(store: str) -> str:
    return hashlib.sha256(store.encode()).hexdigest()[:16]


def _epoch(iso: str) -> int:
    try:
        return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return 0

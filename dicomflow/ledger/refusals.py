"""The refused-copy counts: ``{STATE_PREFIX}refused/{KEY}.json`` counts the flushes whose copy of one file
(generation) into staging was refused for good (403, 400), until the file is reported at MAX_ATTEMPTS."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

from dicomflow import parsing
from dicomflow.errors import MalformedEventError
from dicomflow.ledger.manifest import LEDGER_VERSION
from dicomflow.ledger.state import LedgerState, record_key
from dicomflow.messages.records import PendingRecord


class RefusedCopies(LedgerState):
    """Counts one more refusal of a file's copy, or clears its count once the file is reported."""

    def note_refusal(self, record: PendingRecord) -> int:
        """One more refusal of this file's copy into staging (403, 400); how many there were so far."""
        path = self._refusal_path(record)
        found = self._store.read_json(self.bucket, path)
        count = 1
        if found is not None and isinstance(found[0], Mapping):
            with contextlib.suppress(MalformedEventError):
                count += parsing.integer(found[0], "count", "refusal note", minimum=0, maximum=10**6, default=0)
        self._store.write_json(self.bucket, path, {"version": LEDGER_VERSION, "count": count})
        return count

    def clear_refusal(self, record: PendingRecord) -> None:
        self._store.delete(self.bucket, self._refusal_path(record))

    def _refusal_path(self, record: PendingRecord) -> str:
        return f"{self._refused}{record_key(record)}.json"

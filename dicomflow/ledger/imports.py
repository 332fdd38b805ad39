"""A batch's imports once reconciled: the claim one delivery holds while it reconciles an import, the marker it
records (which releases the import's in-flight mark), and the note left before CONFLICT_POLICY=replace deletes
a stored instance."""

from __future__ import annotations

from collections.abc import Mapping

from dicomflow.ledger.inflight import InFlightMarks
from dicomflow.ledger.manifest import LEDGER_VERSION, Claim, ImportMarker, Manifest
from dicomflow.ledger.state import operation_id, record_key
from dicomflow.messages.records import PendingRecord

_RECONCILING = "reconciling"  # an import's marker while one delivery holds the claim to reconcile it
_RELEASED = "1970-01-01T00:00:00+00:00"  # the claim time of a released claim: any delivery may take it over


class Imports(InFlightMarks):
    """``batches/{BATCH_ID}/imports/{OP}.json`` (claim, then marker) and ``replacing/{KEY}.json``."""

    def note_replacing(self, batch_id: str, record: PendingRecord) -> None:
        """Before its stored instance is deleted: this file (this generation) is being replaced."""
        body = {"version": LEDGER_VERSION, "bucket": record.bucket, "name": record.name,
                "generation": record.generation, "sop_uid": record.sop_uid}  # fmt: skip
        self._store.write_json(self.bucket, self._replacing_path(batch_id, record), body)

    def was_replacing(self, batch_id: str, record: PendingRecord) -> bool:
        return self._store.read_json(self.bucket, self._replacing_path(batch_id, record)) is not None

    def _replacing_path(self, batch_id: str, record: PendingRecord) -> str:
        return self._path(batch_id, "replacing", f"{record_key(record)}.json")

    def import_marker(self, batch_id: str, operation: str) -> ImportMarker | None:
        """The import's marker once reconciled (None before, and while a delivery holds the claim on it)."""
        found = self._store.read_json(self.bucket, self._import_path(batch_id, operation))
        if found is None or (isinstance(found[0], Mapping) and found[0].get("status") == _RECONCILING):
            return None
        return ImportMarker.from_dict(found[0])

    def claim_import(self, batch_id: str, operation: str) -> Claim | None:
        """The right to reconcile this import (re-drive, report, delete, record), or None while another delivery
        holds it or once it is recorded: concurrent deliveries of one watch act once."""
        body = {"version": LEDGER_VERSION, "status": _RECONCILING, "claimed": self._now().isoformat(),
                "operation": operation}  # fmt: skip
        return self._claim(batch_id, self._import_path(batch_id, operation), body, _RECONCILING)

    def release_import(self, claim: Claim) -> None:
        """Give up our claim on an import (its reconcile failed half-way): the next delivery takes it at once
        instead of after the claim timeout."""
        body = {"version": LEDGER_VERSION, "status": _RECONCILING, "claimed": _RELEASED}
        self._store.put_json(self.bucket, claim.path, body, if_generation=claim.generation)

    def _import_path(self, batch_id: str, operation: str) -> str:
        return self._path(batch_id, "imports", operation_id(operation) + ".json")

    def record_import(self, manifest: Manifest, marker: ImportMarker, claim: Claim | None = None) -> bool:
        """Record a reconciled import once (False when another delivery did), replacing our claim when given,
        and release its in-flight slot."""
        path = self._import_path(manifest.batch_id, marker.operation)
        expected = 0 if claim is None else claim.generation
        created = self._store.put_json(self.bucket, path, marker.to_dict(), if_generation=expected) is not None
        self._clear_in_flight(manifest, marker.operation)
        return created

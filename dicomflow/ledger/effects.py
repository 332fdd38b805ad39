"""A batch's one-shot effects: a named effect (an operation reported stuck), each export and the batch's
result, each claimed by the one delivery that may perform it, then completed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dicomflow.ledger.manifest import LEDGER_VERSION, Claim, ExportMarker, ExportStatus, ResultMarker, ResultStatus
from dicomflow.ledger.state import LedgerState


class Effects(LedgerState):
    """``batches/{BATCH_ID}/effects/{NAME}.json``, ``exports/{TARGET}.json`` and ``result.json``."""

    def claim_once(self, batch_id: str, effect: str) -> bool:
        """True for the one delivery that may perform ``effect`` of the batch (e.g. report an operation stuck)."""
        path = self._path(batch_id, "effects", f"{effect}.json")
        body = {"version": LEDGER_VERSION, "claimed": self._now().isoformat()}
        return self._store.put_json(self.bucket, path, body, if_generation=0) is not None

    # ----- exports -----

    def export_marker(self, batch_id: str, target: str) -> tuple[ExportMarker, int] | None:
        found = self._store.read_json(self.bucket, self._path(batch_id, "exports", f"{target}.json"))
        return None if found is None else (ExportMarker.from_dict(found[0]), found[1])

    def claim_export(self, batch_id: str, target: str) -> Claim | None:
        """The right to start this export, or None while another delivery holds it or it was started."""
        path = self._path(batch_id, "exports", f"{target}.json")
        marker = ExportMarker(target, ExportStatus.STARTING, claimed=self._now().isoformat())
        return self._claim(batch_id, path, marker.to_dict(), ExportStatus.STARTING)

    def release_export(self, claim: Claim, target: str) -> bool:
        """Give up our claim to start an export (its start failed for now): the next delivery takes it at once."""
        released = ExportMarker(target, ExportStatus.STARTING, claimed=None)
        return self.complete_export(claim, released)

    def reclaim_export(self, claim: Claim, marker: ExportMarker) -> Claim | None:
        """Replace the marker read with ``claim`` by ``marker`` (a new claim on it), or None when another
        delivery moved it first."""
        written = self._store.put_json(self.bucket, claim.path, marker.to_dict(), if_generation=claim.generation)
        return None if written is None else Claim(claim.batch_id, claim.path, written)

    def complete_export(self, claim: Claim, marker: ExportMarker) -> bool:
        """Replace our claim (or the running marker we read) with ``marker``; False when someone else moved on."""
        return (
            self._store.put_json(self.bucket, claim.path, marker.to_dict(), if_generation=claim.generation) is not None
        )

    def export_claim(self, batch_id: str, target: str, generation: int) -> Claim:
        """A claim on an export marker read at ``generation`` (to finish a running export)."""
        return Claim(batch_id, self._path(batch_id, "exports", f"{target}.json"), generation)

    # ----- result -----

    def result(self, batch_id: str) -> ResultMarker | None:
        found = self._store.read_json(self.bucket, self._path(batch_id, "result.json"))
        return None if found is None else ResultMarker.from_dict(found[0])

    def claim_result(self, batch_id: str) -> Claim | None:
        """The right to publish the batch's result, or None when it was published or is being published."""
        marker = ResultMarker(ResultStatus.PUBLISHING, claimed=self._now().isoformat())
        return self._claim(batch_id, self._path(batch_id, "result.json"), marker.to_dict(), ResultStatus.PUBLISHING)

    def complete_result(self, claim: Claim, summary: Mapping[str, Any]) -> bool:
        marker = ResultMarker(ResultStatus.PUBLISHED, summary=summary)
        return (
            self._store.put_json(self.bucket, claim.path, marker.to_dict(), if_generation=claim.generation) is not None
        )

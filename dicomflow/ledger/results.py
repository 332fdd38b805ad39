"""The batch result published on dicom-results once every import is reconciled and every export is done.

Counts add up: ``files = imported + duplicates + failed + redriven``, where ``duplicates`` are older
generations of an object that the batch imported at its newest generation. ``skipped`` (the DICOMDIRs of the
batch's file-sets, never imported) is outside that sum: ``files`` counts instances.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

from dicomflow.ledger.manifest import LEDGER_VERSION, ExportMarker, ExportOutcome, ImportMarker, Manifest
from dicomflow.messages import lro


class Outcome(StrEnum):
    SUCCESS = "success"
    PARTIAL = "partial"
    FAILED = "failed"


def summarize(
    manifest: Manifest, imports: Sequence[ImportMarker], exports: Sequence[ExportMarker], finished: datetime
) -> dict[str, Any]:
    """The result message of a batch (JSON-ready)."""
    redriven = sum(m.redriven for m in imports)
    failed_in_imports = sum(m.failed for m in imports)
    failed = failed_in_imports + manifest.failed
    imported = len(manifest.files) - redriven - failed_in_imports
    exports_ok = all(e.outcome in (ExportOutcome.SUCCEEDED, ExportOutcome.SKIPPED) for e in exports)
    if exports_ok and not failed and not redriven:
        outcome = Outcome.SUCCESS
    else:
        outcome = Outcome.FAILED if imported <= 0 else Outcome.PARTIAL
    return {
        "version": LEDGER_VERSION,
        "batch_id": manifest.batch_id,
        "store": manifest.store,
        "route": manifest.route,
        "outcome": outcome,
        "files": manifest.taken,
        "imported": imported,
        "duplicates": manifest.duplicates,
        "redriven": redriven,
        "failed": failed,
        "skipped": len(manifest.skipped),
        "imports": [i.to_dict() for i in manifest.imports],
        "exports": [_export(e) for e in exports],
        "timings": _timings(manifest, finished),
    }


def _export(marker: ExportMarker) -> dict[str, Any]:
    """A target's outcome with its operation's counters (``success``, ``failure``) and, for a de-id target,
    the instances it could not de-identify with the API's reason (at most 100; the counter has them all)."""
    return {"target": marker.target, "operation": marker.operation, "outcome": marker.outcome, "reason": marker.reason,
            "success": lro.count_of(marker.counter, "success"), "failure": lro.count_of(marker.counter, "failure"),
            "failed_instances": [dict(f) for f in marker.failed_instances]}  # fmt: skip


def _timings(manifest: Manifest, finished: datetime) -> dict[str, Any]:
    times = sorted(f.record.event_time for f in manifest.files if f.record.event_time)
    timings: dict[str, Any] = {
        "first_upload": times[0] if times else None,
        "batch_created": manifest.created,
        "finished": finished.isoformat(),
    }
    if times:
        try:
            first = datetime.fromisoformat(times[0].replace("Z", "+00:00"))
            timings["seconds_upload_to_finished"] = round((finished - first).total_seconds(), 3)
        except ValueError:
            pass
    return timings

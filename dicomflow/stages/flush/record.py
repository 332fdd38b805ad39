"""The record and watch steps of one flush batch: its manifest written to the ledger, one watch published per
import, its imports marked in flight, then its records settled (acknowledged when the pass ends)."""

from __future__ import annotations

from dicomflow.batching.planner import ImportUri
from dicomflow.batching.selection import Newest
from dicomflow.ledger.manifest import ImportEntry, Manifest, ManifestFile
from dicomflow.messages.records import WatchKind, WatchMessage
from dicomflow.stages.flush.batch import Batch


def record_batch(batch: Batch, newest: Newest, started: list[tuple[ImportUri, str]], files: list[ManifestFile]) -> None:
    """Write the batch's manifest, publish one watch per import, mark the imports in flight, then settle the
    batch's records (a failed publish raises: the records come back, no in-flight mark outlives it)."""
    report, held = batch.report, batch.held
    assert report.batch_id is not None
    report.duplicates = len(newest.superseded)
    skipped = [s for s in held.skipped if any(s.covers(f.record) for f in files)]  # counted once: acked
    report.skipped += len({(s.bucket, s.name) for s in skipped})
    manifest = Manifest(
        batch_id=report.batch_id, created=batch.now.isoformat(), store=batch.healthcare.store_name,
        route=batch.route.name,
        imports=tuple(ImportEntry(item.uri, operation, len(item.files)) for item, operation in started),
        files=tuple(files), failures=tuple(batch.failures), duplicates=report.duplicates,
        listing_calls=report.listing_calls, overshoot=report.overshoot,
        skipped=tuple(sorted({f"gs://{s.bucket}/{s.name}" for s in skipped})),
    )  # fmt: skip
    report.manifest_uri = batch.ledger.write_manifest(manifest)
    watches = [
        (WatchMessage(operation, manifest.batch_id, report.manifest_uri, WatchKind.IMPORT).to_json(),
         {"batch_id": manifest.batch_id, "kind": WatchKind.IMPORT.value})
        for _, operation in started
    ]  # fmt: skip
    batch.publisher.publish(batch.settings.operations_topic, watches)
    batch.ledger.mark_in_flight(manifest)  # after the watches: a failed publish leaves no slot held for hours
    held.done([f.record.key for f in files])
    held.done(newest.superseded)
    used = [m for m in held.markers if any(m.covers(f.record) for f in files)]
    held.markers_done(used)  # the marked folder's files are in this batch: the marker did its work
    held.skipped_done(skipped)

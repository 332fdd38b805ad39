"""The batch ledger: a batch's durable state in the state bucket, one schema (``manifest``), one API.

Everything the pipeline remembers about a batch lives under ``{STATE_PREFIX}batches/{BATCH_ID}/`` as small
JSON objects, each fact created with a generation precondition so redelivered or concurrent messages never
repeat an effect:

    manifest.json          Manifest: the files, the imports that cover them (written by flush)
    imports/OP.json        ImportMarker: that import was reconciled (present / re-driven / failed files); while
                           one delivery reconciles it, its claim ({"status": "reconciling"})
    effects/NAME.json      a one-shot effect was claimed (an operation reported stuck)
    exports/TARGET.json    ExportMarker: an export claimed (starting), started (running) or finished (done)
    filter.txt             the batch's instances that are in the store (the exports' filter file)
    result.json            ResultMarker: the result is being published, or was
    replacing/KEY.json     CONFLICT_POLICY=replace is about to delete the stored instance for that file, so a
                           redelivered watch still re-drives it as replaced (the loop guard) after a crash

and ``{STATE_PREFIX}inflight/{STORE_KEY}/{EPOCH}-{OP}`` marks an import of one store that was started and not
yet reconciled, so flush counts the store's running imports from its own records (one small listing) instead
of listing every operation of the dataset. A marker older than ``max_age`` (the stuck-operation limit) no
longer counts: a watch that was lost cannot hold a slot for ever.

``{STATE_PREFIX}refused/{KEY}.json`` counts the flushes whose copy of one file (generation) into staging was
refused for good (403, 400); at MAX_ATTEMPTS the file is reported and the count removed.

Every file reported on dicom-failed, at any stage, also leaves a FailureNote in
``{STATE_PREFIX}failed/{KEY}/{GENERATION}.json`` (written and read by ``dicomflow.ledger.failures``).

``BatchLedger`` is one base per job, each in its own module over the state they share (``state.LedgerState``:
the store, the bucket, the prefixes, the clock): ``batches`` (manifests, filter files), ``imports`` (reconcile
claims, import markers, replacing notes), ``effects`` (one-shot effects, exports, the result), ``inflight``
(the in-flight marks) and ``refusals`` (the refused-copy counts).
"""

from __future__ import annotations

from dicomflow.ledger.batches import Batches
from dicomflow.ledger.effects import Effects
from dicomflow.ledger.imports import Imports
from dicomflow.ledger.manifest import FailureNote
from dicomflow.ledger.refusals import RefusedCopies


class BatchLedger(Batches, Imports, Effects, RefusedCopies):
    """Reads and writes batches in ``gs://{bucket}/{prefix}``; every write that must happen once is conditional."""

    def failures(self) -> dict[tuple[str, str], FailureNote]:
        """Every file the batches reported failed, by (bucket, name); the latest report wins."""
        found: dict[tuple[str, str], FailureNote] = {}
        for batch_id in self.list_batches():
            manifest = self.read(batch_id)
            if manifest is None:
                continue
            notes = list(manifest.failures)
            for entry in manifest.imports:
                marker = self.import_marker(batch_id, entry.operation)
                notes += marker.failures if marker else ()
            found.update(((n.bucket, n.name), n) for n in notes)
        return found

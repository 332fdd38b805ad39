"""Which object generations a batch of the ledger took: one read per manifest, made once when first asked.

A file whose UIDs the store holds may still never have been through the pipeline at its current generation: a
conflicting overwrite whose record was lost with its Pub/Sub message (the local stack's emulator forgets every
message on a restart). The recovery's backfill asks this before it skips a stored instance."""

from __future__ import annotations

from datetime import datetime

from dicomflow.cli.context import Context
from dicomflow.ledger.manifest import Manifest
from dicomflow.pool import bounded

Generation = tuple[str, str, str]  # bucket, name, generation


class BatchedGenerations:
    """The (bucket, name, generation) of every file a batch's manifest lists (created since ``since``)."""

    def __init__(self, ctx: Context, since: datetime | None = None) -> None:
        self._ctx = ctx
        self._since = since
        self._taken: set[Generation] | None = None

    def holds(self, bucket: str, name: str, generation: str) -> bool:
        return (bucket, name, generation) in self._load()

    def _load(self) -> set[Generation]:
        if self._taken is None:
            ids = self._ctx.ledger.list_batches(self._since)
            manifests: list[Manifest | None] = bounded(self._ctx.ledger.read, ids)
            self._taken = {
                (file.record.bucket, file.record.name, file.record.generation)
                for manifest in manifests
                if manifest is not None
                for file in manifest.files
            }
        return self._taken

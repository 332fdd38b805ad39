"""A batch's manifest and filter file: create, write, read and open a batch, list the batches."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from dicomflow.errors import PermanentError
from dicomflow.ledger.inflight import InFlightMarks
from dicomflow.ledger.manifest import Manifest
from dicomflow.messages.records import BATCH_TIME_FORMAT


class Batches(InFlightMarks):
    """``batches/{BATCH_ID}/manifest.json`` and ``filter.txt``; creating a batch marks its imports in flight."""

    def manifest_uri(self, batch_id: str) -> str:
        return f"gs://{self.bucket}/{self._path(batch_id, 'manifest.json')}"

    def create(self, manifest: Manifest) -> str:
        """Write the batch's manifest and mark its imports in flight; return the manifest's URI."""
        uri = self.write_manifest(manifest)
        self.mark_in_flight(manifest)
        return uri

    def write_manifest(self, manifest: Manifest) -> str:
        """Write the batch's manifest (its watches may be published once it exists); return its URI."""
        return self._store.write_json(self.bucket, self._path(manifest.batch_id, "manifest.json"), manifest.to_dict())

    def read(self, batch_id: str) -> Manifest | None:
        found = self._store.read_json(self.bucket, self._path(batch_id, "manifest.json"))
        return None if found is None else Manifest.from_dict(found[0])

    def open(self, manifest_uri: str) -> Manifest:
        """The manifest a watch message points at; PermanentError when it is not this ledger's or is gone."""
        prefix = f"gs://{self.bucket}/{self._root}"
        batch_id = manifest_uri.removeprefix(prefix).removesuffix("/manifest.json")
        if not manifest_uri.startswith(prefix) or "/" in batch_id or not batch_id:
            raise PermanentError(f"manifest {manifest_uri} is not a batch of {prefix}")
        manifest = self.read(batch_id)
        if manifest is None:
            raise PermanentError(f"manifest {manifest_uri} does not exist")
        return manifest

    def list_batches(self, since: datetime | None = None) -> list[str]:
        """Batch ids, oldest first (ids start with their UTC creation time), all of them: the listing pages
        through the whole ledger, or starts at ``since`` when given (then it reads only the batches since)."""
        start = f"{self._root}{since.astimezone(UTC).strftime(BATCH_TIME_FORMAT)}" if since else None
        ids = {
            info.name[len(self._root) :].split("/")[0]
            for info in self._store.iterate(self.bucket, self._root, start_after=start)
            if info.name.endswith("/manifest.json")
        }
        return sorted(ids)

    def filter_uri(self, batch_id: str) -> str:
        return f"gs://{self.bucket}/{self._path(batch_id, 'filter.txt')}"

    def write_filter(self, batch_id: str, resources: Iterable[str]) -> str:
        return self._store.write_text(
            self.bucket, self._path(batch_id, "filter.txt"), "".join(f"{r}\n" for r in resources)
        )

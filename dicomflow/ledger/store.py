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
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from dicomflow import parsing
from dicomflow.errors import MalformedEventError, PermanentError
from dicomflow.ledger.manifest import (
    LEDGER_VERSION,
    Claim,
    ExportMarker,
    ExportStatus,
    FailureNote,
    ImportMarker,
    Manifest,
    ResultMarker,
    ResultStatus,
)
from dicomflow.messages.records import BATCH_TIME_FORMAT, PendingRecord
from dicomflow.ports import ObjectStore

_RECONCILING = "reconciling"  # an import's marker while one delivery holds the claim to reconcile it
_RELEASED = "1970-01-01T00:00:00+00:00"  # the claim time of a released claim: any delivery may take it over


class BatchLedger:
    """Reads and writes batches in ``gs://{bucket}/{prefix}``; every write that must happen once is conditional."""

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

    # ----- manifests -----

    def _path(self, batch_id: str, *parts: str) -> str:
        return "/".join([f"{self._root}{batch_id}", *parts])

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

    def mark_in_flight(self, manifest: Manifest) -> None:
        """Mark the batch's imports in flight: flush writes them once their watches are published, so a failed
        publish leaves no mark holding a concurrency slot for an import nobody follows."""
        started = _epoch(manifest.created)
        for entry in manifest.imports:
            self._store.write_text(self.bucket, self._inflight_path(manifest.store, started, entry.operation), "")

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

    # ----- imports -----

    def note_replacing(self, batch_id: str, record: PendingRecord) -> None:
        """Before its stored instance is deleted: this file (this generation) is being replaced."""
        body = {"version": LEDGER_VERSION, "bucket": record.bucket, "name": record.name,
                "generation": record.generation, "sop_uid": record.sop_uid}  # fmt: skip
        self._store.write_json(self.bucket, self._replacing_path(batch_id, record), body)

    def was_replacing(self, batch_id: str, record: PendingRecord) -> bool:
        return self._store.read_json(self.bucket, self._replacing_path(batch_id, record)) is not None

    def _replacing_path(self, batch_id: str, record: PendingRecord) -> str:
        key = hashlib.sha256(f"{record.bucket}/{record.name}#{record.generation}".encode()).hexdigest()[:32]
        return self._path(batch_id, "replacing", f"{key}.json")

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
        key = hashlib.sha256(f"{record.bucket}/{record.name}#{record.generation}".encode()).hexdigest()[:32]
        return f"{self._refused}{key}.json"

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

    def claim_once(self, batch_id: str, effect: str) -> bool:
        """True for the one delivery that may perform ``effect`` of the batch (e.g. report an operation stuck)."""
        path = self._path(batch_id, "effects", f"{effect}.json")
        body = {"version": LEDGER_VERSION, "claimed": self._now().isoformat()}
        return self._store.put_json(self.bucket, path, body, if_generation=0) is not None

    def _import_path(self, batch_id: str, operation: str) -> str:
        return self._path(batch_id, "imports", _operation_id(operation) + ".json")

    def record_import(self, manifest: Manifest, marker: ImportMarker, claim: Claim | None = None) -> bool:
        """Record a reconciled import once (False when another delivery did), replacing our claim when given,
        and release its in-flight slot."""
        path = self._import_path(manifest.batch_id, marker.operation)
        expected = 0 if claim is None else claim.generation
        created = self._store.put_json(self.bucket, path, marker.to_dict(), if_generation=expected) is not None
        self._store.delete(self.bucket, self._inflight_path(manifest.store, _epoch(manifest.created), marker.operation))
        return created

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

    def _inflight_path(self, store: str, started: int, operation: str) -> str:
        return f"{self._inflight}{_store_key(store)}/{started:012d}-{_operation_id(operation)}"

    # ----- exports -----

    def export_marker(self, batch_id: str, target: str) -> tuple[ExportMarker, int] | None:
        found = self._store.read_json(self.bucket, self._path(batch_id, "exports", f"{target}.json"))
        return None if found is None else (ExportMarker.from_dict(found[0]), found[1])

    def claim_export(self, batch_id: str, target: str) -> Claim | None:
        """The right to start this export, or None while another delivery holds it or it was started."""
        path = self._path(batch_id, "exports", f"{target}.json")
        marker = ExportMarker(target, ExportStatus.STARTING, claimed=self._now().isoformat())
        return self._claim(batch_id, path, marker.to_dict(), ExportStatus.STARTING)

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

    def filter_uri(self, batch_id: str) -> str:
        return f"gs://{self.bucket}/{self._path(batch_id, 'filter.txt')}"

    def write_filter(self, batch_id: str, resources: Iterable[str]) -> str:
        return self._store.write_text(
            self.bucket, self._path(batch_id, "filter.txt"), "".join(f"{r}\n" for r in resources)
        )

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

    # ----- claims -----

    def _claim(self, batch_id: str, path: str, body: Mapping[str, Any], claiming: str) -> Claim | None:
        """Create ``path``, or take over a claim in state ``claiming`` older than the claim timeout."""
        existing = self._store.read_json(self.bucket, path)
        expected = 0
        if existing is not None:
            state, generation = existing
            if state.get("status") != claiming or self._since(state.get("claimed")) < self._claim_timeout:
                return None  # done, running, or being done by another delivery right now
            expected = generation
        written = self._store.put_json(self.bucket, path, body, if_generation=expected)
        return None if written is None else Claim(batch_id, path, written)

    def _since(self, value: Any) -> float:
        try:
            return (self._now() - datetime.fromisoformat(str(value))).total_seconds()
        except ValueError:
            return float("inf")


def _operation_id(name: str) -> str:
    return name.rpartition("/")[2]


def _store_key(store: str) -> str:
    return hashlib.sha256(store.encode()).hexdigest()[:16]


def _epoch(iso: str) -> int:
    try:
        return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return 0

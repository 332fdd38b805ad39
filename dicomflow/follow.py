"""Follow-up of long-running operations: reconcile imports, fire exports, publish one result per batch.

Batch state lives next to the manifest, one small JSON object per fact, created with ``ifGenerationMatch=0``
so redelivered or concurrent watch messages never repeat an effect:

    batches/ID/manifest.json          written by the flush
    batches/ID/imports/OP.json        an import was reconciled (present / re-driven / failed files)
    batches/ID/exports/TARGET.json    an export was claimed (starting), started (running) or finished (done)
    batches/ID/filter.txt             the instances of this batch that are in the store
    batches/ID/result.json            the result was published
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dicomflow.adapters.healthcare import HealthcareApi
from dicomflow.adapters.pubsub import Publisher
from dicomflow.adapters.storage import ObjectStore
from dicomflow.errors import ApiError, OperationPendingError, PermanentError
from dicomflow.exports import ExportTarget
from dicomflow.logs import fields
from dicomflow.records import RECORD_VERSION, FailedFile, PendingRecord, WatchMessage
from dicomflow.settings import Settings

log = logging.getLogger(__name__)

CLAIM_TIMEOUT_SECONDS = 300.0
_PENDING_FIELDS = (
    "bucket", "name", "generation", "size", "crc32c", "study_uid", "series_uid", "sop_uid", "transfer_syntax",
    "modality", "event_time", "attempt",
)  # fmt: skip


@dataclass
class Batch:
    """A batch's manifest and where its state lives."""

    batch_id: str
    manifest: dict[str, Any]
    bucket: str
    root: str
    manifest_uri: str

    def path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    @property
    def files(self) -> list[dict[str, Any]]:
        return list(self.manifest.get("files", []))

    @property
    def imports(self) -> list[dict[str, Any]]:
        return list(self.manifest.get("imports", []))


@dataclass
class FollowResult:
    """What one watch message led to (for logs and tests)."""

    state: str
    redriven: int = 0
    failed: int = 0
    exports_started: list[str] = field(default_factory=list)
    result_published: bool = False


class Follower:
    def __init__(
        self,
        settings: Settings,
        *,
        store: ObjectStore,
        healthcare: HealthcareApi,
        publisher: Publisher,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.store = store
        self.healthcare = healthcare
        self.publisher = publisher
        self.now = now

    # ----- entry -----

    def follow(self, watch: WatchMessage) -> FollowResult:
        """Raise OperationPendingError while the operation runs (redelivery), return once its effects are done."""
        batch = self._batch(watch)
        operation = self.healthcare.get_operation(watch.operation)
        where = fields(batch_id=batch.batch_id, operation=watch.operation, kind=watch.kind)
        if not operation.get("done"):
            age = self._age(operation)
            if age < self.settings.operation_max_age_seconds:
                log.info("operation still running", extra=where)
                raise OperationPendingError(f"{watch.operation} is not done yet")
            self._report_stuck(batch, watch, age)
            operation = {**operation, "stuck": True}
        if watch.kind == "import":
            result = self._import_done(batch, watch, operation)
        elif watch.kind == "export" and watch.target:
            result = self._export_done(batch, watch, operation)
        else:
            raise PermanentError(f"watch message of unknown kind {watch.kind!r}")
        log.info("operation followed up", extra=fields(**where["fields"], state=result.state))
        return result

    def _batch(self, watch: WatchMessage) -> Batch:
        if not watch.manifest_uri.startswith("gs://"):
            raise PermanentError("watch message manifest_uri is not a gs:// URI")
        bucket, _, name = watch.manifest_uri.removeprefix("gs://").partition("/")
        found = self.store.read_json(bucket, name)
        if found is None:
            raise PermanentError(f"manifest {watch.manifest_uri} does not exist")
        manifest, _ = found
        return Batch(watch.batch_id, manifest, bucket, name.rpartition("/")[0], watch.manifest_uri)

    def _age(self, operation: dict[str, Any]) -> float:
        created = str(operation.get("metadata", {}).get("createTime", ""))
        try:
            started = datetime.fromisoformat(created.replace("Z", "+00:00"))
        except ValueError:
            return 0.0
        return (self.now() - started).total_seconds()

    def _report_stuck(self, batch: Batch, watch: WatchMessage, age: float) -> None:
        reason = f"operation {watch.operation} still not done after {age:.0f}s; reported stuck, not waited for"
        stuck = FailedFile(batch.bucket, batch.manifest_uri, None, reason, "operation", batch_id=batch.batch_id)
        self.publisher.publish(self.settings.failed_topic, [(stuck.to_json(), stuck.attributes())])
        log.error("operation stuck", extra=fields(batch_id=batch.batch_id, operation=watch.operation))

    # ----- imports -----

    def _import_done(self, batch: Batch, watch: WatchMessage, operation: dict[str, Any]) -> FollowResult:
        state_path = batch.path("imports", _operation_id(watch.operation) + ".json")
        result = FollowResult("reconciled")
        if self.store.read_json(batch.bucket, state_path) is None:
            result = self._reconcile(batch, watch, operation)
            state = {
                "version": RECORD_VERSION, "operation": watch.operation, "finished": self.now().isoformat(),
                "counter": operation.get("metadata", {}).get("counter", {}), "error": operation.get("error"),
                "stuck": bool(operation.get("stuck")), "redriven": result.redriven, "failed": result.failed,
            }  # fmt: skip
            self.store.put_json(batch.bucket, state_path, state, if_generation=0)
        if all(self._import_state(batch, item["operation"]) is not None for item in batch.imports):
            self._start_exports(batch, result)
        return result

    def _import_state(self, batch: Batch, operation: str) -> dict[str, Any] | None:
        found = self.store.read_json(batch.bucket, batch.path("imports", _operation_id(operation) + ".json"))
        return None if found is None else dict(found[0])

    def _reconcile(self, batch: Batch, watch: WatchMessage, operation: dict[str, Any]) -> FollowResult:
        """Check every file of this import against the store by its UIDs; re-drive or report what is missing."""
        uri = next((i["uri"] for i in batch.imports if i["operation"] == watch.operation), None)
        files = [f for f in batch.files if f.get("via") == uri]
        present = self._present(files)
        reasons = _sample_errors(operation)
        result = FollowResult("reconciled")
        redrive: list[tuple[bytes, dict[str, str]]] = []
        failed: list[tuple[bytes, dict[str, str]]] = []
        for file in files:
            if _key(file) in present:
                continue
            attempt = int(file.get("attempt", 1))
            if attempt < self.settings.max_attempts:
                record = PendingRecord(**{**{k: file[k] for k in _PENDING_FIELDS if k in file}, "attempt": attempt + 1})
                redrive.append((record.to_json(), {"bucket": record.bucket, "redrive": "true"}))
            else:
                reason = reasons.get(f"gs://{file['bucket']}/{file['name']}") or _operation_reason(operation)
                failure = FailedFile(
                    file["bucket"], file["name"], file.get("generation"),
                    f"not in the store after {attempt} attempt(s): {reason}", "reconcile", attempt, batch.batch_id,
                )  # fmt: skip
                failed.append((failure.to_json(), failure.attributes()))
        if redrive:
            self.publisher.publish(self.settings.pending_topic, redrive)
        if failed:
            self.publisher.publish(self.settings.failed_topic, failed)
        result.redriven, result.failed = len(redrive), len(failed)
        log.info(
            "import reconciled",
            extra=fields(batch_id=batch.batch_id, operation=watch.operation, files=len(files),
                         present=len(files) - len(redrive) - len(failed), redriven=len(redrive), failed=len(failed)),
        )  # fmt: skip
        return result

    def _present(self, files: Sequence[dict[str, Any]]) -> set[tuple[str, str, str]]:
        by_series: dict[tuple[str, str], set[str]] = defaultdict(set)
        for file in files:
            by_series[(file["study_uid"], file["series_uid"])].add(file["sop_uid"])
        present: set[tuple[str, str, str]] = set()
        for (study, series), wanted in by_series.items():
            stored = self.healthcare.series_instances(study, series)
            present.update((study, series, sop) for sop in wanted & stored)
        return present

    # ----- exports -----

    def _start_exports(self, batch: Batch, result: FollowResult) -> None:
        targets = self.settings.export_targets
        if not targets:
            result.state = "imported"
            self._finish(batch, result)
            return
        filter_uri: str | None = None
        for target in targets:
            claim = self._claim(batch, target)
            if claim is None:
                continue
            if filter_uri is None:
                filter_uri, count = self._write_filter(batch)
                if count == 0:
                    filter_uri = ""
            marker = batch.path("exports", f"{target.name}.json")
            if not filter_uri:
                skipped = {"status": "done", "target": target.name, "outcome": "skipped",
                           "reason": "no instance of the batch is in the store"}  # fmt: skip
                self.store.put_json(batch.bucket, marker, skipped, if_generation=claim)
                continue
            try:
                operation = self.healthcare.start_export(target.request_body(filter_uri))
            except ApiError as exc:
                refused = {"status": "done", "target": target.name, "outcome": "failed", "reason": f"refused: {exc}"}
                self.store.put_json(batch.bucket, marker, refused, if_generation=claim)
                continue
            state = {
                "status": "running",
                "target": target.name,
                "operation": operation,
                "started": self.now().isoformat(),
            }
            self.store.put_json(batch.bucket, marker, state, if_generation=claim)
            watch = WatchMessage(operation, batch.batch_id, batch.manifest_uri, "export", target.name)
            self.publisher.publish(
                self.settings.operations_topic, [(watch.to_json(), {"batch_id": batch.batch_id, "kind": "export"})]
            )
            result.exports_started.append(target.name)
            log.info("export started", extra=fields(batch_id=batch.batch_id, operation=operation, target=target.name))
        result.state = "exporting" if result.exports_started else result.state
        self._finish(batch, result)

    def _claim(self, batch: Batch, target: ExportTarget) -> int | None:
        """The generation of our 'starting' marker when we may start this export; None when someone else did."""
        marker = batch.path("exports", f"{target.name}.json")
        existing = self.store.read_json(batch.bucket, marker)
        body = {"status": "starting", "target": target.name, "claimed": self.now().isoformat()}
        if existing is None:
            if not self.store.put_json(batch.bucket, marker, body, if_generation=0):
                return None
        else:
            state, generation = existing
            if state.get("status") != "starting" or self._since(state.get("claimed")) < CLAIM_TIMEOUT_SECONDS:
                return None  # started, finished, or being started by another delivery right now
            if not self.store.put_json(batch.bucket, marker, body, if_generation=generation):
                return None
        found = self.store.read_json(batch.bucket, marker)
        return None if found is None else found[1]

    def _since(self, value: Any) -> float:
        try:
            return (self.now() - datetime.fromisoformat(str(value))).total_seconds()
        except ValueError:
            return float("inf")

    def _write_filter(self, batch: Batch) -> tuple[str, int]:
        present = sorted(self._present(batch.files))
        lines = [f"/studies/{study}/series/{series}/instances/{sop}" for study, series, sop in present]
        uri = self.store.write_text(batch.bucket, batch.path("filter.txt"), "\n".join(lines) + "\n")
        return uri, len(lines)

    def _export_done(self, batch: Batch, watch: WatchMessage, operation: dict[str, Any]) -> FollowResult:
        marker = batch.path("exports", f"{watch.target}.json")
        found = self.store.read_json(batch.bucket, marker)
        if found is not None and found[0].get("status") == "running" and found[0].get("operation") == watch.operation:
            state, generation = found
            outcome = "succeeded" if "response" in operation else ("stuck" if operation.get("stuck") else "failed")
            done = {**state, "status": "done", "outcome": outcome, "finished": self.now().isoformat(),
                    "counter": operation.get("metadata", {}).get("counter", {}),
                    "reason": _operation_reason(operation) if outcome != "succeeded" else None}  # fmt: skip
            self.store.put_json(batch.bucket, marker, done, if_generation=generation)
        result = FollowResult("exported")
        self._finish(batch, result)
        return result

    # ----- result -----

    def _finish(self, batch: Batch, result: FollowResult) -> None:
        exports: list[dict[str, Any]] = []
        for target in self.settings.export_targets:
            found = self.store.read_json(batch.bucket, batch.path("exports", f"{target.name}.json"))
            if found is None or found[0].get("status") != "done":
                return
            exports.append(found[0])
        states = [self._import_state(batch, item["operation"]) for item in batch.imports]
        if any(state is None for state in states):
            return
        path = batch.path("result.json")
        existing = self.store.read_json(batch.bucket, path)
        if existing is not None:
            state, generation = existing
            if state.get("status") == "published" or self._since(state.get("claimed")) < CLAIM_TIMEOUT_SECONDS:
                return
            if not self.store.put_json(batch.bucket, path, {"status": "publishing", "claimed": self.now().isoformat()},
                                       if_generation=generation):  # fmt: skip
                return
        elif not self.store.put_json(batch.bucket, path, {"status": "publishing", "claimed": self.now().isoformat()},
                                     if_generation=0):  # fmt: skip
            return
        message = self._result_message(batch, [s for s in states if s is not None], exports)
        outcome = message["outcome"]
        self.publisher.publish(
            self.settings.results_topic,
            [(_json(message), {"batch_id": batch.batch_id, "outcome": outcome, "store": self.settings.dicom_store})],
        )
        found = self.store.read_json(batch.bucket, path)
        if found is not None:
            self.store.put_json(batch.bucket, path, {**message, "status": "published"}, if_generation=found[1])
        result.result_published = True
        result.state = "finished"
        log.info("batch finished", extra=fields(batch_id=batch.batch_id, outcome=outcome, files=message["files"]))

    def _result_message(
        self, batch: Batch, imports: list[dict[str, Any]], exports: list[dict[str, Any]]
    ) -> dict[str, Any]:
        files = batch.files
        redriven = sum(int(s.get("redriven", 0)) for s in imports)
        failed = sum(int(s.get("failed", 0)) for s in imports) + int(batch.manifest.get("counts", {}).get("failed", 0))
        imported = len(files) - redriven - failed
        times = sorted(str(f.get("event_time")) for f in files if f.get("event_time"))
        finished = self.now()
        timings: dict[str, Any] = {
            "first_upload": times[0] if times else None,
            "batch_created": batch.manifest.get("created"),
            "finished": finished.isoformat(),
        }
        if times:
            try:
                first = datetime.fromisoformat(times[0].replace("Z", "+00:00"))
                timings["seconds_upload_to_finished"] = round((finished - first).total_seconds(), 3)
            except ValueError:
                pass
        exports_ok = all(e.get("outcome") in ("succeeded", "skipped") for e in exports)
        outcome = (
            "success" if exports_ok and not failed and not redriven else ("failed" if imported <= 0 else "partial")
        )
        summary = {
            "version": RECORD_VERSION,
            "batch_id": batch.batch_id,
            "store": self.settings.store_name,
            "outcome": outcome,
            "files": len(files),
            "imported": imported,
            "duplicates": int(batch.manifest.get("duplicates", 0)),
            "redriven": redriven,
            "failed": failed,
            "imports": [{"uri": i["uri"], "operation": i["operation"], "files": i.get("files")} for i in batch.imports],
            "exports": [{key: e.get(key) for key in ("target", "operation", "outcome", "reason")} for e in exports],
            "timings": timings,
        }
        return summary


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True).encode()


def _key(file: dict[str, Any]) -> tuple[str, str, str]:
    return (str(file["study_uid"]), str(file["series_uid"]), str(file["sop_uid"]))


def _operation_id(name: str) -> str:
    return name.rpartition("/")[2]


def _operation_reason(operation: dict[str, Any]) -> str:
    if operation.get("stuck"):
        return "the operation did not finish in time"
    error = operation.get("error")
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])[:500]
    return "the operation reported success but the instance is not in the store"


def _sample_errors(operation: dict[str, Any]) -> dict[str, str]:
    """Per-file reasons the API attaches to a failed import (``error.details[].sampleErrors``)."""
    reasons: dict[str, str] = {}
    error = operation.get("error")
    for detail in error.get("details", []) if isinstance(error, dict) else []:
        for sample in detail.get("sampleErrors", []) if isinstance(detail, dict) else []:
            resource = sample.get("resource")
            message = (sample.get("error") or {}).get("message")
            if resource and message:
                reasons[str(resource)] = str(message)[:500]
    return reasons

"""Long-running operations: started by import/export/delete, run in the background, polled by clients.

An operation's JSON follows ``google.longrunning.Operation`` with the Healthcare ``OperationMetadata``
(counters as int64 strings, zero counters omitted as proto3 JSON does, but the ``counter`` message itself always
written, ``{}`` when every count is zero). Per-item failures of imports, exports and de-identifications are
written as Cloud Logging entries (``log_entries``), served by ``entries:list`` and the ``logsUrl`` view.
Running operations live in memory and are persisted on every
change of phase and every few items; on start-up, an operation a previous process left unfinished ends
with an ABORTED error, so nothing stays pending forever.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from healthcare_emulator.errors import RPC_CODES
from healthcare_emulator.log_entries import LogSource, error_entry, logs_url
from healthcare_emulator.names import DatasetName
from healthcare_emulator.repository import Repository, now_rfc3339

log = logging.getLogger(__name__)

_PERSIST_EVERY = 25
_SAMPLE_ERRORS = 10


class OperationFailedError(Exception):
    """Raised by a job to end its operation with an error status."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class OperationContext:
    """What a running job reports through: counters, per-item failures, cancellation."""

    name: str
    _runner: OperationRunner
    success: int = 0
    failure: int = 0
    pending: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)
    error_times: list[str] = field(default_factory=list)
    cancel_requested: bool = False
    size: int = 0  # bytes the job read (imports) or wrote (exports): what a timing profile's per-MB term counts
    # the job ends with its response once any item succeeded, failures only counted (a de-id); otherwise any
    # failed item ends the operation with an error whose details sample them (imports, exports)
    partial_success: bool = False

    def set_pending(self, count: int) -> None:
        self.pending = count
        self._runner.persist(self)

    def record_success(self, count: int = 1) -> None:
        self.success += count
        self.pending = max(0, self.pending - count)
        self._maybe_persist()

    def record_failure(self, resource: str, reason: str) -> None:
        self.failure += 1
        self.pending = max(0, self.pending - 1)
        self.errors.append((resource, reason))
        self.error_times.append(now_rfc3339())
        self._maybe_persist()

    def _maybe_persist(self) -> None:
        if (self.success + self.failure) % _PERSIST_EVERY == 0:
            self._runner.persist(self)


Job = Callable[[OperationContext], dict[str, Any] | None]


@dataclass
class _Running:
    body: dict[str, Any]
    dataset: str
    context: OperationContext
    log_source: LogSource
    flushed_errors: int = 0


class OperationRunner:
    """Starts jobs as operations on a small thread pool and answers operations.get/list/cancel."""

    def __init__(self, repository: Repository, workers: int = 4) -> None:
        self._repository = repository
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="operation")
        self._running: dict[str, _Running] = {}
        self._lock = threading.Lock()
        self._abort_interrupted()

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def start(
        self,
        dataset: DatasetName,
        api_version: str,
        method: str,
        response_type: str | None,
        base_url: str,
        job: Job,
        service: str = "dicom.DicomService",
        store: str | None = None,
    ) -> dict[str, Any]:
        """Create an operation for ``job`` and run it in the background; return the operation JSON.

        ``store`` is the DICOM store the job works on, named in the log entries of its failed items.
        """
        name = f"{dataset}/operations/{secrets.randbits(63)}"
        body: dict[str, Any] = {
            "name": name,
            "metadata": {
                "@type": f"type.googleapis.com/google.cloud.healthcare.{api_version}.OperationMetadata",
                "apiMethodName": f"google.cloud.healthcare.{api_version}.{service}.{method}",
                "createTime": now_rfc3339(),
                "logsUrl": logs_url(base_url, name),
                "counter": {},
            },
        }
        context = OperationContext(name=name, _runner=self)
        log_source = LogSource(name, method, store)
        with self._lock:
            self._running[name] = _Running(body=body, dataset=str(dataset), context=context, log_source=log_source)
        self._repository.save_operation(name, str(dataset), body)
        self._pool.submit(self._run, name, job, api_version, response_type)
        return self.get(name) or body

    def finished(self, dataset: DatasetName, api_version: str, method: str, response: dict[str, Any]) -> dict[str, Any]:
        """An operation that is done at once (e.g. datasets.create)."""
        name = f"{dataset}/operations/{secrets.randbits(63)}"
        now = now_rfc3339()
        body = {
            "name": name,
            "metadata": {
                "@type": f"type.googleapis.com/google.cloud.healthcare.{api_version}.OperationMetadata",
                "apiMethodName": f"google.cloud.healthcare.{api_version}.{method}",
                "createTime": now,
                "endTime": now,
            },
            "done": True,
            "response": response,
        }
        self._repository.save_operation(name, str(dataset), body)
        return body

    def get(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            running = self._running.get(name)
            if running is not None:
                return _snapshot(running)
        return self._repository.get_operation(name)

    def list_operations(self, dataset: DatasetName, offset: int, limit: int) -> list[dict[str, Any]]:
        bodies = self._repository.list_operations(str(dataset), offset, limit)
        return [self.get(body["name"]) or body for body in bodies]

    def cancel(self, name: str) -> bool:
        """Request cancellation; False when the operation is unknown. Finished operations are unaffected."""
        with self._lock:
            running = self._running.get(name)
            if running is not None:
                running.context.cancel_requested = True
                return True
        return self._repository.get_operation(name) is not None

    def errors(self, name: str) -> list[tuple[str, str]] | None:
        if self.get(name) is None:
            return None
        with self._lock:
            running = self._running.get(name)
            pending_errors = list(running.context.errors[running.flushed_errors :]) if running else []
        return self._repository.operation_errors(name) + pending_errors

    def persist(self, context: OperationContext) -> None:
        with self._lock:
            running = self._running.get(context.name)
            if running is None:
                return
            body = _snapshot(running)
            first = running.flushed_errors
            new_errors = context.errors[first:]
            new_times = context.error_times[first : first + len(new_errors)]
            running.flushed_errors = first + len(new_errors)
            dataset = running.dataset
            source = running.log_source
        self._repository.add_operation_errors(context.name, new_errors)
        if source.logs() and new_errors:
            received = now_rfc3339()
            code = RPC_CODES["INVALID_ARGUMENT"]
            entries = [
                error_entry(source, first + index + 1, resource, reason, code, timestamp, received)
                for index, ((resource, reason), timestamp) in enumerate(zip(new_errors, new_times, strict=True))
            ]
            self._repository.add_log_entries(source.project, entries)
        self._repository.save_operation(context.name, dataset, body)

    def _run(self, name: str, job: Job, api_version: str, response_type: str | None) -> None:
        with self._lock:
            running = self._running[name]
        context = running.context
        try:
            response = job(context)
            outcome = self._outcome(context, response, api_version, response_type)
        except OperationFailedError as exc:
            outcome = {"error": {"code": RPC_CODES[exc.status], "message": exc.message}}
        except Exception as exc:  # a bug in the emulator must not leave the operation pending
            log.exception("operation %s crashed", name)
            outcome = {"error": {"code": RPC_CODES["INTERNAL"], "message": f"internal error: {type(exc).__name__}"}}
        self.persist(context)
        with self._lock:
            body = _snapshot(running)
            body["metadata"]["endTime"] = now_rfc3339()
            body["done"] = True
            body.update(outcome)
            dataset = running.dataset
        self._repository.save_operation(name, dataset, body)
        with self._lock:
            del self._running[name]

    @staticmethod
    def _outcome(
        context: OperationContext,
        response: dict[str, Any] | None,
        api_version: str,
        response_type: str | None,
    ) -> dict[str, Any]:
        if context.failure and not (context.partial_success and context.success):
            kind = "ImportDicomDataErrorDetails" if response_type and "Import" in response_type else "ErrorDetails"
            sample = [
                {"resource": resource, "error": {"code": RPC_CODES["INVALID_ARGUMENT"], "message": reason}}
                for resource, reason in context.errors[:_SAMPLE_ERRORS]
            ]
            return {
                "error": {
                    "code": RPC_CODES["INVALID_ARGUMENT"],
                    "message": (
                        f"{context.failure} of {context.failure + context.success} items failed; "
                        "per-item errors are in Cloud Logging (see the operation's logsUrl)"
                    ),
                    "details": [
                        {
                            "@type": f"type.googleapis.com/google.cloud.healthcare.{api_version}.dicom.{kind}",
                            "sampleErrors": sample,
                        }
                    ],
                }
            }
        result = dict(response or {})
        if response_type:
            result = {
                "@type": f"type.googleapis.com/google.cloud.healthcare.{api_version}.{response_type}",
                **result,
            }
        return {"response": result}

    def _abort_interrupted(self) -> None:
        for body in self._repository.unfinished_operations():
            body["done"] = True
            body["metadata"]["endTime"] = now_rfc3339()
            body["error"] = {
                "code": RPC_CODES["ABORTED"],
                "message": "operation interrupted by an emulator restart; start it again",
            }
            dataset = body["name"].split("/operations/")[0]
            self._repository.save_operation(body["name"], dataset, body)


def _snapshot(running: _Running) -> dict[str, Any]:
    context = running.context
    body = {**running.body, "metadata": dict(running.body["metadata"])}
    counter = {
        key: str(value)
        for key, value in (
            ("success", context.success),
            ("failure", context.failure),
            ("pending", context.pending),
        )
        if value
    }
    body["metadata"]["counter"] = counter
    if context.cancel_requested:
        body["metadata"]["cancelRequested"] = True
    return body

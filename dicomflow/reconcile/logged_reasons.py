"""The API's own reason for each file an import failed, read from Cloud Logging (the ``ErrorLog`` port).

The Healthcare API logs one entry per failed file; the operation's ``sampleErrors`` are deprecated and hold a
handful at most. Read only when a file is about to be reported, with one bounded, paged query per operation.
Log ingestion lags, so a read that finds fewer errors than the operation failed files is repeated every
``READ_INTERVAL_SECONDS`` for up to FAILURE_LOG_WAIT_SECONDS, and ends early once two reads find the same
errors (the API logs "a limited number of errors" past a threshold it sizes by the input: a log that stopped
growing will not hold the rest); then what was found is used. Logs that cannot be
read (no role, an outage) give no reasons, with one ERROR naming the role: the caller falls back to the
sample errors and then to the operation's summary.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from dicomflow.errors import DicomflowError, PermissionDeniedError
from dicomflow.logs import fields
from dicomflow.ports import ErrorLog

log = logging.getLogger(__name__)
READ_INTERVAL_SECONDS = 5.0
MAX_LOGGED_REASONS = 10_000  # entries read per operation (10 pages); files beyond get the fallback reason
_REASON_CHARS = 500


@dataclass
class LoggedReasons:
    """Reads the per-file reasons of an operation; ``error_log`` None: none (no reader configured)."""

    error_log: ErrorLog | None
    wait_seconds: float
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = field(default=time.sleep)

    def of(self, operation_name: str, failures: int) -> dict[str, str]:
        """Reasons by the gs:// URI of the imported object, for up to ``failures`` failed files."""
        if self.error_log is None or failures <= 0:
            return {}
        wanted = min(failures, MAX_LOGGED_REASONS)
        deadline = self.clock() + self.wait_seconds
        reads, before = 0, -1
        while True:
            reads += 1
            try:
                errors = self.error_log.operation_errors(operation_name, wanted)
            except PermissionDeniedError as exc:
                log.error("per-file reasons not readable from Cloud Logging: grant roles/logging.viewer",
                          extra=fields(operation=operation_name, error=str(exc)))  # fmt: skip
                return {}
            except DicomflowError as exc:
                log.warning("per-file reasons not read from Cloud Logging", extra=fields(
                    operation=operation_name, error=str(exc)))  # fmt: skip
                return {}
            reasons = {e.source: e.message[:_REASON_CHARS] for e in errors if e.source and e.message}
            left = deadline - self.clock()
            settled = len(reasons) == before > 0  # the log stopped growing: capped, not lagging
            if len(reasons) >= wanted or left <= 0 or settled:
                log.info("per-file reasons read", extra=fields(
                    operation=operation_name, failures=failures, logged=len(reasons), reads=reads))  # fmt: skip
                return reasons
            before = len(reasons)
            self.sleep(min(READ_INTERVAL_SECONDS, left))

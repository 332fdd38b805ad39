"""The start step of one flush batch: one import started on the route's store, counted in the report, or why
it did not start (a transient failure: its files wait; a refusal: the caller decides)."""

from __future__ import annotations

import logging

from dicomflow.errors import PermanentError, RetryableError
from dicomflow.logs import fields
from dicomflow.messages.records import PendingRecord
from dicomflow.stages.flush.batch import Batch

# the flush stage's logger: these lines keep the logger name they always had (operators filter on it)
log = logging.getLogger(__package__)  # the flush's one logger: its lines keep the name dicomflow.stages.flush


def start_import(batch: Batch, uri: str, records: list[PendingRecord]) -> str | PermanentError | None:
    """Start one import: its operation name, or why not (None: a transient failure; the files wait)."""
    report = batch.report
    try:
        operation = batch.healthcare.start_import(uri, batch.route.storage_class)
    except RetryableError as exc:
        log.warning("import could not start; its files wait", extra=fields(uri=uri, error=str(exc)))
        return None
    except PermanentError as exc:
        log.error("import refused", extra=fields(uri=uri, status=exc.status, error=str(exc)))
        return exc
    report.imports_started += 1
    report.imported_files += len(records)
    report.operations.append(operation)
    log.info("import started", extra=fields(batch_id=report.batch_id, operation=operation, uri=uri,
                                            files=len(records)))  # fmt: skip
    return operation

"""Cloud Logging JSON lines: severity, labels, context fields; an expected retry is INFO, not ERROR."""

from __future__ import annotations

import json
import logging

from dicomflow.errors import OperationPendingError
from dicomflow.logs import CloudLoggingFormatter, ExpectedRetryFilter, fields


def _record(level: int, message: str, exc: BaseException | None = None, **extra: object) -> logging.LogRecord:
    exc_info = (type(exc), exc, None) if exc else None
    record = logging.LogRecord("flask.app", level, __file__, 1, message, None, exc_info)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_formatter_writes_severity_labels_and_fields() -> None:
    record = _record(logging.WARNING, "import refused", **fields(batch_id="B1", operation="op/1", files=3))
    entry = json.loads(CloudLoggingFormatter("on_flush").format(record))
    assert entry["severity"] == "WARNING"
    assert entry["message"] == "import refused"
    assert entry["logging.googleapis.com/labels"] == {"component": "on_flush", "batch_id": "B1", "operation": "op/1"}
    assert entry["files"] == 3


def test_an_operation_not_done_yet_is_logged_at_info_without_a_traceback() -> None:
    record = _record(logging.ERROR, "Exception on / [POST]", OperationPendingError("op/1 is not done yet"))
    assert ExpectedRetryFilter((OperationPendingError,)).filter(record)
    entry = json.loads(CloudLoggingFormatter("on_operation").format(record))
    assert entry["severity"] == "INFO"
    assert "error_type" not in entry


def test_other_exceptions_stay_errors() -> None:
    record = _record(logging.ERROR, "Exception on / [POST]", ValueError("boom"))
    ExpectedRetryFilter((OperationPendingError,)).filter(record)
    assert json.loads(CloudLoggingFormatter("x").format(record))["severity"] == "ERROR"

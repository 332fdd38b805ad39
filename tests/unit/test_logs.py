"""Cloud Logging JSON lines: severity, labels, context fields; an expected retry is INFO, not ERROR."""

from __future__ import annotations

import json
import logging

from dicomflow.errors import OperationPendingError
from dicomflow.logs import CloudLoggingFormatter, ExpectedRetryFilter, ObjectNames, fields


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
    assert ExpectedRetryFilter((OperationPendingError,)).filter(record) is True
    entry = json.loads(CloudLoggingFormatter("on_operation").format(record))
    assert entry["severity"] == "INFO"
    assert "error_type" not in entry


def test_other_exceptions_stay_errors() -> None:
    record = _record(logging.ERROR, "Exception on / [POST]", ValueError("boom"))
    assert ExpectedRetryFilter((OperationPendingError,)).filter(record) is True  # kept, never dropped
    assert json.loads(CloudLoggingFormatter("x").format(record))["severity"] == "ERROR"


def test_hashed_object_names_leave_no_name_in_a_log_line() -> None:
    # GIVEN a sender that names folders after the patient, and the hashed policy
    names = ObjectNames(hashed=True, key=b"0123456789abcdef")
    formatter = CloudLoggingFormatter("test", names)
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "import gs://src/DOE^JOHN_12345/a.dcm failed", None,
                               None)  # fmt: skip
    record.fields = {"object": "DOE^JOHN_12345/a.dcm", "bucket": "src", "files": 3,
                     "error": "reading gs://src/DOE^JOHN_12345/a.dcm: HTTP 404"}  # fmt: skip
    # WHEN the line is formatted THEN the name appears nowhere, the same name hashes the same way, the rest stays
    line = formatter.format(record)
    assert "DOE" not in line and "JOHN" not in line
    entry = json.loads(line)
    assert entry["object"] == names.show("DOE^JOHN_12345/a.dcm") and entry["object"].startswith("h:")
    assert entry["bucket"] == "src" and entry["files"] == 3
    assert names.show("gs://src/DOE^JOHN_12345/a.dcm") in entry["message"]
    # AND another key gives another hash (a dictionary of common names needs the key)
    assert ObjectNames(hashed=True, key=b"another-key-0000").show("DOE^JOHN_12345/a.dcm") != entry["object"]


def test_full_object_names_are_logged_as_they_are() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "queued", None, None)
    record.fields = {"object": "DOE^JOHN_12345/a.dcm"}
    assert json.loads(CloudLoggingFormatter("test").format(record))["object"] == "DOE^JOHN_12345/a.dcm"

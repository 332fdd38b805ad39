"""Cloud Logging JSON lines: severity, labels, context fields; an expected retry is INFO, not ERROR."""

from __future__ import annotations

import json
import logging

import pytest

from dicomflow.errors import OperationPendingError
from dicomflow.logs import CloudLoggingFormatter, ExpectedRetryFilter, ObjectNames, OperatorFormatter, fields


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
    assert f"gs://src/{entry['object']}" in entry["message"]  # the same hash as the field: lines correlate
    # AND another key gives another hash (a dictionary of common names needs the key)
    assert ObjectNames(hashed=True, key=b"another-key-0000").show("DOE^JOHN_12345/a.dcm") != entry["object"]


def test_full_object_names_are_logged_as_they_are() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "queued", None, None)
    record.fields = {"object": "DOE^JOHN_12345/a.dcm"}
    assert json.loads(CloudLoggingFormatter("test").format(record))["object"] == "DOE^JOHN_12345/a.dcm"


HOSTILE_NAMES = [
    "Doe Jane/1.dcm",  # the hash used to stop at the first space: "h:... Jane/1.dcm"
    "Müller, Jürgen ÄÖÜ 北京/série 2/ß.dcm",
    "Doe\nJane/line\nbreak.dcm",
    'O\'Brien "Pat"/x.dcm',
    "Smith Ann/gs://src/Smith Ann/inner.dcm",
    "tabs\tand  double  spaces/(1).dcm",
]
WORDS = ["Doe", "Jane", "Müller", "Jürgen", "北京", "série", "O'Brien", "Pat", "Smith", "Ann", "tabs", "spaces"]


def _leaks(line: str) -> list[str]:
    """The words of the names in a JSON line, read raw and decoded (escapes would hide Unicode and newlines)."""
    decoded = json.dumps(json.loads(line), ensure_ascii=False)
    return [word for word in WORDS if word in line or word in decoded]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hashed_mode_hashes_whole_names_with_spaces_unicode_newlines_and_uris(name: str) -> None:
    # GIVEN a name passed as a field, and texts that hold it bare, quoted, URL-encoded and inside gs:// URIs
    from urllib.parse import quote

    names = ObjectNames(hashed=True, key=b"0123456789abcdef")
    message = f"copying gs://src/{name} failed"
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, message, None, None)
    record.fields = {"object": name, "bucket": "src", "error": f"reading gs://src/{name}: HTTP 403 '{name}'",
                     "reason": f"GET https://storage.googleapis.com/storage/v1/b/src/o/{quote(name, safe='')} 404",
                     "nested": {"names": [name], "why": [f"gs://src/{name} is gone"]}}  # fmt: skip
    # WHEN it is formatted as JSON
    line = CloudLoggingFormatter("test", names).format(record)
    # THEN no part of the name is left, and the field and the texts show the one hash of the whole name
    assert _leaks(line) == []
    entry = json.loads(line)
    assert entry["object"] == names.show(name)
    assert entry["message"] == f"copying gs://src/{names.show(name)} failed"
    assert entry["error"] == f"reading gs://src/{names.show(name)}: HTTP 403 '{names.show(name)}'"
    assert entry["reason"].startswith("GET https://storage.googleapis.com/h:")  # a URL's path is hashed whole
    assert entry["nested"] == {"names": [names.show(name)], "why": [f"gs://src/{names.show(name)} is gone"]}


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_name_no_field_announces_is_hashed_to_the_end_of_its_text(name: str) -> None:
    # GIVEN texts that carry a name (in a gs:// URI, in a URL path) and no field naming it
    names = ObjectNames(hashed=True, key=b"0123456789abcdef")
    record = logging.LogRecord("urllib3", logging.WARNING, __file__, 1, f"retrying gs://src/{name} now", None, None)
    record.fields = {"error": f"GET https://storage.example/b/src/o/{name}"}
    # WHEN formatted THEN nothing after the scheme (or the URL's host) is shown: where the name ends is unknowable
    entry = json.loads(line := CloudLoggingFormatter("test", names).format(record))
    assert _leaks(line) == []
    assert entry["message"] == "retrying " + names.show(f"gs://src/{name} now")
    assert entry["error"] == "GET https://storage.example/" + names.show(f"/b/src/o/{name}")


def test_buckets_hashed_names_and_hosts_stay_readable() -> None:
    names = ObjectNames(hashed=True, key=b"0123456789abcdef")
    text = f"bucket gs://src, object gs://src/{names.show('a')}, host https://healthcare.googleapis.com"
    assert names.scrub(text) == text


def test_operator_lines_of_the_cli_and_backfill_job_hash_names_too() -> None:
    # GIVEN the CLI's stderr formatter with the hashed policy, a line naming a file, with a traceback
    names = ObjectNames(hashed=True, key=b"0123456789abcdef")
    try:
        raise ValueError("gs://src/Doe Jane/1.dcm unreadable")
    except ValueError as exc:
        error = (ValueError, exc, exc.__traceback__)
        record = logging.LogRecord("dicomflow.stages.intake", logging.WARNING, __file__, 1,
                                   "object Doe Jane/1.dcm is bad", None, error)  # fmt: skip
    record.fields = {"object": "Doe Jane/1.dcm"}
    # WHEN formatted THEN the name is its hash and the traceback shows only the exception type
    line = OperatorFormatter(names).format(record)
    assert "Doe" not in line and "Jane" not in line
    assert line.startswith(f"WARNING dicomflow.stages.intake: object {names.show('Doe Jane/1.dcm')} is bad")
    assert line.endswith("ValueError")


def test_the_full_policy_keeps_texts_as_they_are() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "copying gs://src/Doe Jane/1.dcm", None, None)
    record.fields = {"object": "Doe Jane/1.dcm", "error": "gs://src/Doe Jane/1.dcm: HTTP 403"}
    entry = json.loads(CloudLoggingFormatter("test").format(record))
    assert (
        entry["message"] == "copying gs://src/Doe Jane/1.dcm" and entry["error"] == "gs://src/Doe Jane/1.dcm: HTTP 403"
    )
    assert OperatorFormatter().format(record) == "INFO x: copying gs://src/Doe Jane/1.dcm"

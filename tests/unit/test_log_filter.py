"""The emulator's Cloud Logging filter subset: operators, precedence, quoting, and refusals."""

from __future__ import annotations

from typing import Any

import pytest

from healthcare_emulator.log_filter import FilterError, parse_filter

ENTRY: dict[str, Any] = {
    "logName": "projects/p/logs/healthcare.googleapis.com%2Fimport_dicom",
    "resource": {"type": "healthcare_dicom_store", "labels": {"dataset_id": "ds", "dicom_store_id": "s"}},
    "severity": "ERROR",
    "timestamp": "2026-12-06T10:00:00.500000Z",
    "operation": {"id": "123", "producer": "healthcare.googleapis.com/ImportDicomData"},
    "jsonPayload": {
        "@type": "type.googleapis.com/google.cloud.healthcare.logging.ImportDicomLogEntry",
        "source": "gs://b/dir/a file.dcm",
        "error": {"code": 3, "message": "not a DICOM Part 10 file"},
    },
}


def _matches(text: str) -> bool:
    return parse_filter(text)(ENTRY)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('operation.id="123"', True),
        ("operation.id=124", False),
        ('resource.type!="healthcare_dataset"', True),
        ('resource.labels.dicom_store_id!="s"', False),
        ("jsonPayload.error.code>2", True),
        ("jsonPayload.error.code>3", False),
        ("jsonPayload.error.code>=3", True),
        ("jsonPayload.error.code<3", False),
        ("jsonPayload.error.code<=3", True),
        ('jsonPayload.source:"A FILE"', True),
        ("jsonPayload.source:other", False),
        ("jsonPayload.missing:*", False),
        ("operation.producer:*", True),
        ("severity>=WARNING", True),
        ("severity>ERROR", False),
        ("severity=error", True),
        ('timestamp>="2026-12-06T10:00:00Z"', True),
        ('timestamp<"2026-12-06T10:00:00.5Z"', False),
        ('timestamp<="2026-12-06T11:00:00+01:00"', False),  # 10:00Z: instants, not strings
        ('logName="projects/p/logs/healthcare.googleapis.com%2Fimport_dicom"', True),
        ("", True),
    ],
)
def test_log_filter_each_operator(text: str, expected: bool) -> None:
    assert _matches(text) is expected


def test_log_filter_quoted_path_segments_and_escapes() -> None:
    assert _matches('jsonPayload."@type":"ImportDicomLogEntry"')
    assert _matches("jsonPayload.@type:ImportDicomLogEntry")
    assert not parse_filter(r'jsonPayload.source="say \"hi\""')(ENTRY)
    assert parse_filter(r'jsonPayload.source="say \"hi\""')({"jsonPayload": {"source": 'say "hi"'}})


def test_log_filter_and_or_not_and_juxtaposition() -> None:
    assert _matches('severity=ERROR AND operation.id="123"')
    assert _matches('severity=ERROR operation.id="123"')  # juxtaposition is AND
    assert not _matches('severity=ERROR operation.id="999"')
    assert _matches('operation.id="999" OR severity=ERROR')
    assert _matches('NOT operation.id="999"')
    assert not _matches('-operation.id="123"')
    assert _matches('(operation.id="999" OR operation.id="123") AND severity=ERROR')


def test_log_filter_or_binds_tighter_than_and() -> None:
    # Logging query language: NOT, then OR, then AND. "a AND b OR c" is "a AND (b OR c)":
    # with a false, the whole is false (it would be true were it "(a AND b) OR c").
    assert not _matches('operation.id="999" AND severity=INFO OR severity=ERROR')
    assert _matches('operation.id="123" AND severity=INFO OR severity=ERROR')
    # NOT binds tighter than OR: "NOT a OR b" is "(NOT a) OR b"
    assert _matches('NOT operation.id="123" OR severity=ERROR')


@pytest.mark.parametrize(
    "text",
    [
        "operation.id=",
        '"123"',
        "(operation.id=1",
        "operation.id=1)",
        "AND operation.id=1",
        "severity>=LOUD",
        'timestamp>"yesterday"',
        "just words",
        "operation..id=1",
        "operation.id==1",
        'operation.id="unterminated',
    ],
)
def test_log_filter_refuses_what_it_cannot_parse(text: str) -> None:
    with pytest.raises(FilterError):
        parse_filter(text)

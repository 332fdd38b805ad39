"""Validation of export requests and filter files (request-time 400s and operation errors)."""

from __future__ import annotations

import pytest

from healthcare_emulator.errors import ApiError
from healthcare_emulator.exporter import parse_bigquery_destination, parse_gcs_destination, parse_resource_paths
from healthcare_emulator.operations import OperationFailedError


def test_parse_resource_paths_accepts_study_series_and_instance_lines() -> None:
    text = "/studies/1.2\n\n/studies/1.2/series/3.4\nstudies/1.2/series/3.4/instances/5.6\n"
    assert parse_resource_paths(text) == [("1.2", None, None), ("1.2", "3.4", None), ("1.2", "3.4", "5.6")]


@pytest.mark.parametrize("line", ["/patients/1", "/studies/", "/studies/1.2/instances/3", "/studies/abc"])
def test_parse_resource_paths_fails_naming_the_malformed_line(line: str) -> None:
    with pytest.raises(OperationFailedError) as failed:
        parse_resource_paths(f"/studies/1.2\n{line}\n")
    assert failed.value.status == "INVALID_ARGUMENT"
    assert "line 2" in failed.value.message
    assert line in failed.value.message


def test_parse_gcs_destination_defaults_to_stored_dicom() -> None:
    export = parse_gcs_destination({"uriPrefix": "gs://bkt/out/"})
    assert (export.bucket, export.prefix, export.kind, export.extension) == ("bkt", "out", "dicom", ".dcm")
    assert export.transfer_syntax is None


@pytest.mark.parametrize(
    ("mime", "kind", "extension"),
    [
        ("image/png", "png", ".png"),
        ("image/jpeg", "jpeg", ".jpg"),
        ("application/octet-stream", "octet-stream", ""),
        ("application/dicom; transfer-syntax=1.2.840.10008.1.2.1", "dicom", ".dcm"),
    ],
)
def test_parse_gcs_destination_maps_mime_types(mime: str, kind: str, extension: str) -> None:
    export = parse_gcs_destination({"uriPrefix": "gs://bkt", "mimeType": mime})
    assert (export.kind, export.extension, export.prefix) == (kind, extension, "")


@pytest.mark.parametrize(
    ("destination", "message"),
    [
        ({"uriPrefix": "bkt/out"}, "uriPrefix must be gs://"),
        ({"uriPrefix": "gs://bkt", "mimeType": "text/plain"}, "unsupported gcsDestination.mimeType"),
        (
            {"uriPrefix": "gs://bkt", "mimeType": "application/dicom; transfer-syntax=1.2.840.10008.1.2.2"},
            "unsupported transfer syntax '1.2.840.10008.1.2.2'",
        ),
        (
            {"uriPrefix": "gs://bkt", "mimeType": "application/dicom; transfer-syntax=1.2.840.10008.1.2.4.80"},
            "unsupported transfer syntax",
        ),
    ],
)
def test_parse_gcs_destination_rejects_bad_requests(destination: dict[str, str], message: str) -> None:
    with pytest.raises(ApiError) as bad:
        parse_gcs_destination(destination)
    assert bad.value.http_status == 400
    assert message in bad.value.message


def test_parse_bigquery_destination_validates_table_and_disposition() -> None:
    assert parse_bigquery_destination({"tableUri": "bq://p.d.t"}).write_disposition == "WRITE_EMPTY"
    assert parse_bigquery_destination({"tableUri": "bq://p.d.t", "force": True}).write_disposition == "WRITE_TRUNCATE"
    with pytest.raises(ApiError, match="tableUri must be"):
        parse_bigquery_destination({"tableUri": "p.d.t"})
    with pytest.raises(ApiError, match="writeDisposition"):
        parse_bigquery_destination({"tableUri": "bq://p.d.t", "writeDisposition": "WRITE_SOMETIMES"})

"""The emulator's Cloud Logging surface through google-api-python-client's logging v2 client (static discovery):
per-file import errors as LogEntry JSON, read with entries:list by operation id, paged."""

from __future__ import annotations

import io
import json
import urllib.request
from typing import Any

import pydicom
import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from googleapiclient import discovery
from googleapiclient.errors import HttpError

from devstack.synthetic import generate_dataset
from tests.integration.conftest import LOCATION, PROJECT, LocalServices, StoreRef, upload, wait_for_operation

pytestmark = pytest.mark.integration

IMPORT_LOG = f"projects/{PROJECT}/logs/healthcare.googleapis.com%2Fimport_dicom"


@pytest.fixture(scope="module")
def logging_api(services: LocalServices) -> Any:
    return discovery.build(
        "logging",
        "v2",
        client_options={"api_endpoint": services.healthcare_url},
        credentials=AnonymousCredentials(),
        static_discovery=True,
    )


def _list_all(logging_api: Any, filter_: str, page_size: int) -> tuple[list[dict[str, Any]], int]:
    entries: list[dict[str, Any]] = []
    pages = 0
    token: str | None = None
    while True:
        body: dict[str, Any] = {"resourceNames": [f"projects/{PROJECT}"], "filter": filter_, "pageSize": page_size}
        if token:
            body["pageToken"] = token
        answer = logging_api.entries().list(body=body).execute()
        pages += 1
        entries.extend(answer.get("entries", []))
        token = answer.get("nextPageToken")
        if not token:
            return entries, pages


def test_import_errors_are_log_entries_read_by_operation_id_and_paged(
    api_v1: Any, logging_api: Any, store: StoreRef, bucket: storage.Bucket
) -> None:
    # GIVEN two good files and five bad ones: text under .dcm, empty files, a DICOM file without UIDs
    good = generate_dataset(1, 1, 2, seed=2501)
    no_uids = b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\x14\x001.2.840.10008.1.2.1\0"
    bad = {"in/text.dcm": b"hello", "in/empty1.dcm": b"", "in/empty2.dcm": b"", "in/nouids.dcm": no_uids}
    upload(bucket, {**{f"in/good{i}.dcm": g.data for i, g in enumerate(good)}, **bad})

    # WHEN they are imported
    started = (
        api_v1.projects()
        .locations()
        .datasets()
        .dicomStores()
        .import_(name=store.name, body={"gcsSource": {"uri": f"gs://{bucket.name}/in/*.dcm"}})
        .execute()
    )
    operation = wait_for_operation(api_v1, started["name"])
    assert operation["metadata"]["counter"] == {"success": "2", "failure": "4"}
    operation_id = operation["name"].rsplit("/", 1)[1]

    # THEN entries:list filtered by the operation id gives one entry per failed file, over several pages
    entries, pages = _list_all(
        logging_api, f'resource.type="healthcare_dicom_store" AND operation.id="{operation_id}"', page_size=3
    )
    assert pages == 2
    assert sorted(e["jsonPayload"]["source"] for e in entries) == sorted(f"gs://{bucket.name}/{n}" for n in bad)
    assert len({e["insertId"] for e in entries}) == 4
    # AND each entry has the real shape: store labels, typed payload with the error, the operation, severity
    store_id = store.name.rsplit("/", 1)[1]
    dataset_id = store.dataset_name.rsplit("/", 1)[1]
    for entry in entries:
        assert entry["logName"] == IMPORT_LOG
        assert entry["resource"] == {
            "type": "healthcare_dicom_store",
            "labels": {
                "project_id": PROJECT,
                "location": LOCATION,
                "dataset_id": dataset_id,
                "dicom_store_id": store_id,
            },
        }
        assert entry["severity"] == "ERROR"
        assert entry["operation"] == {"id": operation_id, "producer": "healthcare.googleapis.com/ImportDicomData"}
        payload = entry["jsonPayload"]
        assert payload["@type"] == "type.googleapis.com/google.cloud.healthcare.logging.ImportDicomLogEntry"
        assert payload["error"]["code"] == 3 and payload["error"]["message"]
        assert entry["timestamp"] <= entry["receiveTimestamp"]
    reasons = {e["jsonPayload"]["source"].rsplit("/", 1)[1]: e["jsonPayload"]["error"]["message"] for e in entries}
    assert reasons["empty1.dcm"] == "empty file"
    assert "DICM" in reasons["text.dcm"]
    # AND newest-first ordering reverses oldest-first, and a filter on another operation finds nothing
    ascending, _ = _list_all(logging_api, f'operation.id="{operation_id}"', page_size=1000)
    descending = (
        logging_api.entries()
        .list(
            body={
                "resourceNames": [f"projects/{PROJECT}"],
                "filter": f'operation.id="{operation_id}"',
                "orderBy": "timestamp desc",
            }
        )
        .execute()["entries"]
    )
    assert [e["insertId"] for e in descending] == [e["insertId"] for e in reversed(ascending)]
    assert _list_all(logging_api, 'operation.id="0"', page_size=10)[0] == []
    # AND the operation's logsUrl view shows the same entries
    with urllib.request.urlopen(operation["metadata"]["logsUrl"], timeout=10) as response:
        viewed = json.loads(response.read())["entries"]
    assert [e["insertId"] for e in viewed] == [e["insertId"] for e in ascending]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"filter": "operation.id="}, "filter"),
        ({"filter": "(severity=ERROR"}, "filter"),
        ({"pageSize": 1001}, "pageSize"),
        ({"pageSize": -1}, "pageSize"),
        ({"orderBy": "severity"}, "orderBy"),
    ],
)
def test_entries_list_refuses_bad_requests_with_invalid_argument(
    logging_api: Any, body: dict[str, Any], needle: str
) -> None:
    with pytest.raises(HttpError) as bad:
        logging_api.entries().list(body={"resourceNames": [f"projects/{PROJECT}"], **body}).execute()
    assert bad.value.status_code == 400
    error = json.loads(bad.value.content)["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    assert needle in error["message"]


def test_export_errors_are_log_entries_naming_the_instance(
    api_v1: Any, logging_api: Any, store: StoreRef, bucket: storage.Bucket
) -> None:
    # GIVEN a store holding an instance without pixel data (it cannot become a PNG) and one with pixels
    with_pixels, without = generate_dataset(1, 1, 2, seed=2503)
    dataset = pydicom.dcmread(io.BytesIO(without.data))
    del dataset.PixelData
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    upload(bucket, {"ex/a.dcm": with_pixels.data, "ex/b.dcm": buffer.getvalue()})
    stores = api_v1.projects().locations().datasets().dicomStores()
    imported = stores.import_(name=store.name, body={"gcsSource": {"uri": f"gs://{bucket.name}/ex/*.dcm"}}).execute()
    assert wait_for_operation(api_v1, imported["name"])["metadata"]["counter"] == {"success": "2"}
    # WHEN the store is exported as PNG
    destination = {"uriPrefix": f"gs://{bucket.name}/png", "mimeType": "image/png"}
    started = stores.export(name=store.name, body={"gcsDestination": destination}).execute()
    operation = wait_for_operation(api_v1, started["name"])
    assert operation["metadata"]["counter"] == {"success": "1", "failure": "1"}
    # THEN the failed instance has one ExportDicomLogEntry naming it by its DICOMweb path
    operation_id = operation["name"].rsplit("/", 1)[1]
    [entry], _ = _list_all(logging_api, f'operation.id="{operation_id}" severity>=ERROR', page_size=50)
    assert entry["logName"] == f"projects/{PROJECT}/logs/healthcare.googleapis.com%2Fexport_dicom"
    assert entry["resource"]["labels"]["dicom_store_id"] == store.name.rsplit("/", 1)[1]
    assert entry["jsonPayload"] == {
        "@type": "type.googleapis.com/google.cloud.healthcare.logging.ExportDicomLogEntry",
        "resourceName": (
            f"{store.name}/dicomWeb/studies/{without.study_uid}/series/{without.series_uid}/instances/{without.sop_uid}"
        ),
        "error": {"code": 3, "message": "the instance has no pixel data"},
    }

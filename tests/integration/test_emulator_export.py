"""dicomStores.export through google-api-python-client: every mimeType, filter files, BigQuery, errors."""

from __future__ import annotations

import io
import json
import uuid
from typing import Any

import pydicom
import pytest
from google.cloud import storage
from PIL import Image

from devstack.synthetic import SyntheticInstance, generate_dataset
from tests.integration.conftest import StoreRef, upload, wait_for_operation

pytestmark = pytest.mark.integration

EXPLICIT_LE = "1.2.840.10008.1.2.1"
RLE = "1.2.840.10008.1.2.5"


@pytest.fixture
def loaded(api_v1: Any, store: StoreRef, bucket: storage.Bucket) -> list[SyntheticInstance]:
    """A store holding 2 studies x 1 series x 2 instances; the 2nd is multi-frame, the 3rd RLE-compressed."""
    instances = generate_dataset(2, 1, 2, seed=101, multiframe_every=2, compressed_every=3)
    upload(bucket, {f"src/{i.relative_path}": i.data for i in instances})
    stores = api_v1.projects().locations().datasets().dicomStores()
    operation = stores.import_(name=store.name, body={"gcsSource": {"uri": f"gs://{bucket.name}/src/**.dcm"}}).execute()
    assert "error" not in wait_for_operation(api_v1, operation["name"])
    return instances


def _export(api: Any, store: StoreRef, body: dict[str, Any]) -> dict[str, Any]:
    stores = api.projects().locations().datasets().dicomStores()
    return wait_for_operation(api, stores.export(name=store.name, body=body).execute()["name"])


def _objects(bucket: storage.Bucket, prefix: str) -> dict[str, bytes]:
    return {blob.name: blob.download_as_bytes() for blob in bucket.list_blobs(prefix=prefix)}


def _path(prefix: str, i: SyntheticInstance) -> str:
    return f"{prefix}/{i.study_uid}/{i.series_uid}/{i.sop_uid}"


def test_export_dicom_writes_the_stored_bytes_under_study_series_instance(
    api: Any, store: StoreRef, bucket: storage.Bucket, loaded: list[SyntheticInstance]
) -> None:
    operation = _export(api, store, {"gcsDestination": {"uriPrefix": f"gs://{bucket.name}/out/"}})
    assert operation["response"]["@type"].endswith("ExportDicomDataResponse")
    assert operation["metadata"]["counter"] == {"success": str(len(loaded))}
    assert _objects(bucket, "out/") == {f"{_path('out', i)}.dcm": i.data for i in loaded}


def test_export_transcodes_to_explicit_vr_little_endian(
    api_v1: Any, store: StoreRef, bucket: storage.Bucket, loaded: list[SyntheticInstance]
) -> None:
    mime = f"application/dicom; transfer-syntax={EXPLICIT_LE}"
    _export(api_v1, store, {"gcsDestination": {"uriPrefix": f"gs://{bucket.name}/le", "mimeType": mime}})
    exported = _objects(bucket, "le/")
    compressed = [i for i in loaded if i.transfer_syntax == RLE]
    assert compressed, "the fixture must hold an RLE instance"
    for instance in loaded:
        dataset = pydicom.dcmread(io.BytesIO(exported[f"{_path('le', instance)}.dcm"]))
        original = pydicom.dcmread(io.BytesIO(instance.data))
        assert dataset.file_meta.TransferSyntaxUID == EXPLICIT_LE
        assert (dataset.pixel_array == original.pixel_array).all()


@pytest.mark.parametrize(("mime", "ext", "fmt"), [("image/png", ".png", "PNG"), ("image/jpeg", ".jpg", "JPEG")])
def test_export_images_one_file_per_frame(
    api_v1: Any,
    store: StoreRef,
    bucket: storage.Bucket,
    loaded: list[SyntheticInstance],
    mime: str,
    ext: str,
    fmt: str,
) -> None:
    prefix = f"img-{fmt.lower()}"
    _export(api_v1, store, {"gcsDestination": {"uriPrefix": f"gs://{bucket.name}/{prefix}", "mimeType": mime}})
    exported = _objects(bucket, f"{prefix}/")
    expected: set[str] = set()
    for instance in loaded:
        if instance.frames == 1:
            expected.add(f"{_path(prefix, instance)}{ext}")
        else:
            expected |= {f"{_path(prefix, instance)}/{n}{ext}" for n in range(1, instance.frames + 1)}
    assert set(exported) == expected
    for data in exported.values():
        image = Image.open(io.BytesIO(data))
        assert image.format == fmt
        assert image.size == (32, 32)


def test_export_octet_stream_writes_raw_frames(
    api_v1: Any, store: StoreRef, bucket: storage.Bucket, loaded: list[SyntheticInstance]
) -> None:
    _export(
        api_v1,
        store,
        {"gcsDestination": {"uriPrefix": f"gs://{bucket.name}/raw", "mimeType": "application/octet-stream"}},
    )
    exported = _objects(bucket, "raw/")
    single = next(i for i in loaded if i.frames == 1 and i.transfer_syntax == EXPLICIT_LE)
    assert len(exported[_path("raw", single)]) == 32 * 32 * 2
    multi = next(i for i in loaded if i.frames > 1)
    assert {n for n in exported if n.startswith(_path("raw", multi) + "/")} == {
        f"{_path('raw', multi)}/{n}" for n in range(1, multi.frames + 1)
    }


def test_export_with_filter_file_exports_exactly_the_listed_resources(
    api: Any, store: StoreRef, bucket: storage.Bucket, loaded: list[SyntheticInstance]
) -> None:
    # GIVEN a filter naming one whole study and one instance of the other study
    first_study = [i for i in loaded if i.study_uid == loaded[0].study_uid]
    other = next(i for i in loaded if i.study_uid != loaded[0].study_uid)
    lines = [
        f"/studies/{loaded[0].study_uid}",
        f"/studies/{other.study_uid}/series/{other.series_uid}/instances/{other.sop_uid}",
        "",
    ]
    bucket.blob("filters/f.txt").upload_from_string("\n".join(lines))
    # WHEN exporting with it
    operation = _export(
        api,
        store,
        {
            "gcsDestination": {"uriPrefix": f"gs://{bucket.name}/filtered"},
            "filterConfig": {"resourcePathsGcsUri": f"gs://{bucket.name}/filters/f.txt"},
        },
    )
    # THEN exactly those instances are exported
    assert operation["metadata"]["counter"] == {"success": str(len(first_study) + 1)}
    assert set(_objects(bucket, "filtered/")) == {f"{_path('filtered', i)}.dcm" for i in [*first_study, other]}


def test_export_fails_naming_a_malformed_filter_line(
    api_v1: Any, store: StoreRef, bucket: storage.Bucket, loaded: list[SyntheticInstance]
) -> None:
    bucket.blob("filters/bad.txt").upload_from_string(f"/studies/{loaded[0].study_uid}\n/patients/1\n")
    operation = _export(
        api_v1,
        store,
        {
            "gcsDestination": {"uriPrefix": f"gs://{bucket.name}/never"},
            "filterConfig": {"resourcePathsGcsUri": f"gs://{bucket.name}/filters/bad.txt"},
        },
    )
    assert operation["error"]["code"] == 3
    assert "line 2" in operation["error"]["message"]
    assert "/patients/1" in operation["error"]["message"]
    assert _objects(bucket, "never/") == {}


def test_export_to_a_missing_bucket_fails_naming_it(
    api_v1: Any, store: StoreRef, loaded: list[SyntheticInstance]
) -> None:
    missing = f"no-such-bucket-{uuid.uuid4().hex[:8]}"
    operation = _export(api_v1, store, {"gcsDestination": {"uriPrefix": f"gs://{missing}/x"}})
    assert operation["error"]["code"] == 5
    assert f"gs://{missing}" in operation["error"]["message"]


def test_export_to_bigquery_writes_one_row_per_instance_to_a_local_table(
    api_v1: Any, store: StoreRef, loaded: list[SyntheticInstance], services: Any
) -> None:
    table = f"bq://test-project.dicom.t{uuid.uuid4().hex[:8]}"
    destination = {"bigqueryDestination": {"tableUri": table, "writeDisposition": "WRITE_EMPTY"}}
    assert "response" in _export(api_v1, store, destination)
    rows = [
        json.loads(line) for line in (services.data_dir / "bigquery" / f"{table[5:]}.ndjson").read_text().splitlines()
    ]
    assert sorted(r["SOPInstanceUID"] for r in rows) == sorted(i.sop_uid for i in loaded)
    # WRITE_EMPTY on a non-empty table fails; WRITE_APPEND doubles the rows
    again = _export(api_v1, store, destination)
    assert "not empty" in again["error"]["message"]
    destination["bigqueryDestination"]["writeDisposition"] = "WRITE_APPEND"
    _export(api_v1, store, destination)
    lines = (services.data_dir / "bigquery" / f"{table[5:]}.ndjson").read_text().splitlines()
    assert len(lines) == 2 * len(loaded)


def test_export_rejects_unsupported_mime_types_at_request_time(api_v1: Any, store: StoreRef) -> None:
    from googleapiclient.errors import HttpError

    stores = api_v1.projects().locations().datasets().dicomStores()
    for mime in ("text/plain", "application/dicom; transfer-syntax=1.2.840.10008.1.2.4.80"):
        with pytest.raises(HttpError) as bad:
            stores.export(
                name=store.name, body={"gcsDestination": {"uriPrefix": "gs://bkt-x/y", "mimeType": mime}}
            ).execute()
        assert bad.value.status_code == 400
        assert json.loads(bad.value.content)["error"]["status"] == "INVALID_ARGUMENT"

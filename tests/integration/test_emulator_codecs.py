"""Every transfer syntax of the codec corpus through the real local services: store, render, transcode, export.

The store is loaded with one instance per syntax (tests/codec_corpus.py) by STOW-RS through dicomweb-client or by
a Cloud Storage import; WADO-RS goes through dicomweb-client (or requests for what the client cannot ask for), and
exports through google-api-python-client and the gcloud CLI (skipped where gcloud is absent).
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from google.cloud import storage
from googleapiclient.errors import HttpError
from PIL import Image
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
)

from healthcare_emulator.multipart import parse_multipart_related
from tests.codec_corpus import LOSSY, CodecSample, codec_samples, decoded
from tests.integration.conftest import PROJECT, StoreRef, upload, wait_for_operation

pytestmark = pytest.mark.integration

SAMPLES = codec_samples()
PALETTE = "palette-colour"


def _path(prefix: str, sample: CodecSample) -> str:
    return f"{prefix}/{sample.study_uid}/{sample.series_uid}/{sample.sop_uid}"


def _dataset(data: bytes) -> pydicom.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(io.BytesIO(data))


def _assert_same_pixels(sample: CodecSample, data: bytes, target: str) -> None:
    """Equal pixel data from a lossless source to a lossless target; else a mean error under 3% of the range."""
    result, original = decoded(data), decoded(sample.data)
    assert result.shape == original.shape, sample.name
    if sample.syntax in LOSSY or target in (JPEG2000, JPEGBaseline8Bit):
        span = max(float(original.max() - original.min()), 1.0)
        assert float(np.abs(result - original).mean()) <= 0.03 * span, sample.name
    else:
        assert np.array_equal(result, original), sample.name


@pytest.fixture
def web(services: Any, store: StoreRef) -> DICOMwebClient:
    return DICOMwebClient(url=f"{services.healthcare_url}/v1/{store.name}/dicomWeb")


@pytest.fixture
def stowed(web: DICOMwebClient) -> list[CodecSample]:
    """Every sample stored by STOW-RS through dicomweb-client."""
    response = web.store_instances([_dataset(sample.data) for sample in SAMPLES])
    assert len(response.ReferencedSOPSequence) == len(SAMPLES)
    assert "FailedSOPSequence" not in response
    return SAMPLES


@pytest.fixture
def imported(api_v1: Any, store: StoreRef, bucket: storage.Bucket) -> list[CodecSample]:
    """Every sample stored byte for byte by a dicomStores.import from Cloud Storage."""
    upload(bucket, {f"src/{sample.name}.dcm": sample.data for sample in SAMPLES})
    stores = api_v1.projects().locations().datasets().dicomStores()
    operation = stores.import_(name=store.name, body={"gcsSource": {"uri": f"gs://{bucket.name}/src/**.dcm"}}).execute()
    finished = wait_for_operation(api_v1, operation["name"])
    assert "error" not in finished
    assert finished["metadata"]["counter"] == {"success": str(len(SAMPLES))}
    return SAMPLES


# ------------------------------------------------------------------------------------------------------- WADO-RS


def test_every_syntax_renders_as_png_and_jpeg(web: DICOMwebClient, stowed: list[CodecSample]) -> None:
    for sample in stowed:
        uids = (sample.study_uid, sample.series_uid, sample.sop_uid)
        for media_type, pil_format in (("image/png", "PNG"), ("image/jpeg", "JPEG")):
            rendered = web.retrieve_instance_rendered(*uids, media_types=(media_type,))
            assert Image.open(io.BytesIO(rendered)).format == pil_format, sample.name
            frame = web.retrieve_instance_frames_rendered(*uids, [sample.frames], media_types=(media_type,))
            assert Image.open(io.BytesIO(frame)).format == pil_format, sample.name


@pytest.mark.parametrize("target", [JPEG2000Lossless, JPEG2000, JPEGBaseline8Bit, ExplicitVRLittleEndian])
def test_retrieve_instance_transcodes_to_the_requested_syntax(
    web: DICOMwebClient, stowed: list[CodecSample], target: str
) -> None:
    for sample in stowed:
        if not _encodable(sample, target):
            continue  # the unit tests check these refusals
        uids = (sample.study_uid, sample.series_uid, sample.sop_uid)
        dataset = web.retrieve_instance(*uids, media_types=(("application/dicom", target),))
        assert dataset.file_meta.TransferSyntaxUID == target, sample.name
        buffer = io.BytesIO()
        pydicom.dcmwrite(buffer, dataset, enforce_file_format=True)
        _assert_same_pixels(sample, buffer.getvalue(), target)


def _encodable(sample: CodecSample, target: str) -> bool:
    """JPEG Baseline holds 8-bit greyscale or RGB only; palette indices are never compressed lossily."""
    if target == JPEGBaseline8Bit:
        return sample.name != PALETTE and int(_dataset(sample.data).BitsAllocated) == 8
    return not (target == JPEG2000 and sample.name == PALETTE)


def test_retrieve_implicit_little_endian_with_a_single_part_accept(
    services: Any, store: StoreRef, stowed: list[CodecSample]
) -> None:
    sample = next(s for s in stowed if s.name == "jpegls-lossless-signed16")
    accept = f"application/dicom; transfer-syntax={ImplicitVRLittleEndian}"
    response = requests.get(_instance_url(services, store, sample), headers={"Accept": accept}, timeout=30)
    assert response.status_code == 200, response.text
    assert _dataset(response.content).file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
    _assert_same_pixels(sample, response.content, ImplicitVRLittleEndian)


def _instance_url(services: Any, store: StoreRef, sample: CodecSample) -> str:
    return (
        f"{services.healthcare_url}/v1/{store.name}/dicomWeb/studies/{sample.study_uid}"
        f"/series/{sample.series_uid}/instances/{sample.sop_uid}"
    )


def test_retrieve_frames_transcoded_to_jpeg_2000(services: Any, store: StoreRef, stowed: list[CodecSample]) -> None:
    sample = next(s for s in stowed if s.name == "jpegls-lossless-signed16")
    accept = f'multipart/related; type="application/octet-stream"; transfer-syntax={JPEG2000Lossless}'
    url = f"{_instance_url(services, store, sample)}/frames/1,2"
    response = requests.get(url, headers={"Accept": accept}, timeout=30)
    assert response.status_code == 200, response.text
    parts = parse_multipart_related(response.content, response.headers["Content-Type"])
    assert len(parts) == 2
    assert all(data.startswith(b"\xff\x4f\xff\x51") for _, data in parts)  # J2K codestream: SOC then SIZ


@pytest.mark.parametrize("syntax", ["1.2.840.10008.1.2.2", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.100"])
def test_retrieve_in_an_unlisted_syntax_is_406(
    services: Any, store: StoreRef, stowed: list[CodecSample], syntax: str
) -> None:
    sample = stowed[0]
    response = requests.get(
        _instance_url(services, store, sample),
        headers={"Accept": f"application/dicom; transfer-syntax={syntax}"},
        timeout=30,
    )
    assert response.status_code == 406
    assert response.json()["error"]["status"]


def test_an_undecodable_syntax_is_a_400_and_a_failed_export_item_never_a_500(
    services: Any, api_v1: Any, store: StoreRef, bucket: storage.Bucket, web: DICOMwebClient
) -> None:
    # GIVEN an instance labelled MPEG-2 (a syntax no installed plugin decodes)
    sample = next(s for s in SAMPLES if s.name == "j2k-lossless-rgb")
    dataset = _dataset(sample.data)
    dataset.file_meta.TransferSyntaxUID = pydicom.uid.UID("1.2.840.10008.1.2.4.100")
    web.store_instances([dataset])
    # WHEN it is rendered THEN the answer is a 400 with a JSON error
    response = requests.get(f"{_instance_url(services, store, sample)}/rendered", timeout=30)
    assert response.status_code == 400
    assert "cannot decode pixel data" in response.json()["error"]["message"]
    # AND a PNG export records it as a failed item
    stores = api_v1.projects().locations().datasets().dicomStores()
    body = {"gcsDestination": {"uriPrefix": f"gs://{bucket.name}/png", "mimeType": "image/png"}}
    finished = wait_for_operation(api_v1, stores.export(name=store.name, body=body).execute()["name"])
    assert finished["metadata"]["counter"] == {"failure": "1"}


# -------------------------------------------------------------------------------------------------------- export


def _export(api: Any, store: StoreRef, bucket: storage.Bucket, prefix: str, mime: str) -> dict[str, Any]:
    stores = api.projects().locations().datasets().dicomStores()
    body = {"gcsDestination": {"uriPrefix": f"gs://{bucket.name}/{prefix}", "mimeType": mime}}
    return wait_for_operation(api, stores.export(name=store.name, body=body).execute()["name"])


def _objects(bucket: storage.Bucket, prefix: str) -> dict[str, bytes]:
    return {blob.name: blob.download_as_bytes() for blob in bucket.list_blobs(prefix=prefix)}


def _image_names(samples: list[CodecSample], prefix: str, ext: str) -> set[str]:
    names: set[str] = set()
    for sample in samples:
        if sample.frames == 1:
            names.add(f"{_path(prefix, sample)}{ext}")
        else:
            names |= {f"{_path(prefix, sample)}/{n}{ext}" for n in range(1, sample.frames + 1)}
    return names


@pytest.mark.parametrize(("mime", "ext", "fmt"), [("image/png", ".png", "PNG"), ("image/jpeg", ".jpg", "JPEG")])
def test_image_export_fails_no_instance(
    api_v1: Any, store: StoreRef, bucket: storage.Bucket, imported: list[CodecSample], mime: str, ext: str, fmt: str
) -> None:
    finished = _export(api_v1, store, bucket, fmt.lower(), mime)
    assert "error" not in finished
    assert finished["metadata"]["counter"] == {"success": str(len(imported))}
    exported = _objects(bucket, f"{fmt.lower()}/")
    assert set(exported) == _image_names(imported, fmt.lower(), ext)
    assert {Image.open(io.BytesIO(data)).format for data in exported.values()} == {fmt}


@pytest.mark.parametrize(
    "target",
    [
        JPEG2000Lossless,
        JPEG2000,
        JPEGBaseline8Bit,
        ExplicitVRLittleEndian,
        ImplicitVRLittleEndian,
        DeflatedExplicitVRLittleEndian,
    ],
)
def test_dicom_export_transcodes_every_instance(
    api_v1: Any, store: StoreRef, bucket: storage.Bucket, imported: list[CodecSample], target: str
) -> None:
    finished = _export(api_v1, store, bucket, "ts", f"application/dicom; transfer-syntax={target}")
    # Lossy JPEG 2000 of palette indices is refused (pydicom will not compress them lossily), and JPEG Baseline
    # holds 8-bit greyscale or RGB only: each refused instance is one failed item.
    refused = [s for s in imported if not _encodable(s, target)]
    expected = {"success": str(len(imported) - len(refused))} | ({"failure": str(len(refused))} if refused else {})
    assert finished["metadata"]["counter"] == expected
    exported = _objects(bucket, "ts/")
    for sample in imported:
        if sample in refused:
            assert f"{_path('ts', sample)}.dcm" not in exported
            continue
        data = exported[f"{_path('ts', sample)}.dcm"]
        dataset = _dataset(data)
        assert dataset.file_meta.TransferSyntaxUID == target, sample.name
        assert dataset.SOPInstanceUID == sample.sop_uid
        _assert_same_pixels(sample, data, target)


def test_dicom_export_to_an_unlisted_syntax_is_a_400_at_request_time(api_v1: Any, store: StoreRef) -> None:
    stores = api_v1.projects().locations().datasets().dicomStores()
    mime = "application/dicom; transfer-syntax=1.2.840.10008.1.2.4.80"
    body = {"gcsDestination": {"uriPrefix": "gs://anything/out", "mimeType": mime}}
    with pytest.raises(HttpError) as refused:
        stores.export(name=store.name, body=body).execute()
    assert refused.value.resp.status == 400


# -------------------------------------------------------------------------------------------------------- gcloud


@pytest.mark.gcloud
@pytest.mark.skipif(shutil.which("gcloud") is None, reason="gcloud (Cloud SDK) is not installed")
@pytest.mark.parametrize("mime", ["image/png", f"application/dicom; transfer-syntax={JPEG2000Lossless}"])
def test_gcloud_export_with_mime_type(
    tmp_path: Path, services: Any, store: StoreRef, bucket: storage.Bucket, imported: list[CodecSample], mime: str
) -> None:
    env = {
        **os.environ,
        "CLOUDSDK_CONFIG": str(tmp_path / "gcloud-config"),
        "CLOUDSDK_API_ENDPOINT_OVERRIDES_HEALTHCARE": f"{services.healthcare_url}/",
        "CLOUDSDK_AUTH_DISABLE_CREDENTIALS": "true",
        "CLOUDSDK_CORE_PROJECT": PROJECT,
        "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
        "CLOUDSDK_CORE_DISABLE_USAGE_REPORTING": "true",
        "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK": "true",
    }
    command = [
        "gcloud",
        "beta",
        "healthcare",
        "dicom-stores",
        "export",
        "gcs",
        store.store,
        "--dataset",
        store.dataset,
        "--location",
        store.location,
        f"--gcs-uri-prefix=gs://{bucket.name}/cli/",
        f"--mime-type={mime}",
        "--format=json",
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    exported = _objects(bucket, "cli/")
    if mime == "image/png":
        assert set(exported) == _image_names(imported, "cli", ".png")
        return
    assert set(exported) == {f"{_path('cli', sample)}.dcm" for sample in imported}
    for sample in imported:
        data = exported[f"{_path('cli', sample)}.dcm"]
        assert _dataset(data).file_meta.TransferSyntaxUID == JPEG2000Lossless
        _assert_same_pixels(sample, data, JPEG2000Lossless)

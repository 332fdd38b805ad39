"""DICOMweb as the API's conformance statement and PS3.18 describe it: 204 for no match, fuzzy matching (and
its Warning header), frames by media type, bulk data URIs, and URLs built from the server's own address.

Clients: dicomweb-client (as users call it) and requests for the raw HTTP details.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from PIL import Image

from devstack.synthetic import SyntheticInstance, generate_dataset, make_instance
from healthcare_emulator.gcs import GcsClient
from healthcare_emulator.multipart import parse_multipart_related
from healthcare_emulator.server import EmulatorServer
from tests.integration.conftest import StoreRef

pytestmark = pytest.mark.integration

PATIENT_NAME = "00100010"


@pytest.fixture
def web(services: Any, store: StoreRef) -> DICOMwebClient:
    return DICOMwebClient(url=f"{services.healthcare_url}/v1/{store.name}/dicomWeb")


def _store(web: DICOMwebClient, *files: bytes) -> None:
    web.store_instances([pydicom.dcmread(io.BytesIO(data)) for data in files])


def _named(name: str, seed: int) -> bytes:
    return make_instance(
        study_uid=f"2.25.{seed}1", series_uid=f"2.25.{seed}2", sop_uid=f"2.25.{seed}3", patient_name=name, seed=seed
    )


# ----- QIDO-RS -----


def test_search_without_match_is_204_no_content(services: Any, store: StoreRef, web: DICOMwebClient) -> None:
    url = f"{services.healthcare_url}/v1/{store.name}/dicomWeb/studies"
    # GIVEN an empty store THEN a search is 204 with no body
    empty = requests.get(url, timeout=30)
    assert (empty.status_code, empty.content) == (204, b"")
    # GIVEN an instance THEN a search that misses is 204 and one that hits is 200 with DICOM JSON
    _store(web, _named("DOE^JANE", 1801))
    assert requests.get(url, params={"PatientName": "SMITH*"}, timeout=30).status_code == 204
    hit = requests.get(url, params={"PatientName": "DOE*"}, timeout=30)
    assert hit.status_code == 200
    assert hit.headers["Content-Type"] == "application/dicom+json"
    # AND dicomweb-client turns the 204 into an empty list
    assert web.search_for_studies(search_filters={"PatientName": "SMITH*"}) == []


def test_fuzzy_matching_finds_name_parts_in_any_order(web: DICOMwebClient) -> None:
    _store(web, _named("DOE^JANE^MARIE", 1811), _named("ROE^JOHN", 1812))

    def names(**kwargs: Any) -> list[str]:
        found = web.search_for_studies(**kwargs)
        return sorted(item[PATIENT_NAME]["Value"][0]["Alphabetic"] for item in found)

    # WHEN a name part is searched without fuzzy matching THEN nothing matches (whole-value matching)
    assert names(search_filters={"PatientName": "jan"}) == []
    # WITH fuzzymatching=true THEN a prefix of any part matches, case-insensitively, parts in any order
    assert names(search_filters={"PatientName": "jan"}, fuzzymatching=True) == ["DOE^JANE^MARIE"]
    assert names(search_filters={"PatientName": "marie doe"}, fuzzymatching=True) == ["DOE^JANE^MARIE"]
    assert names(search_filters={"PatientName": "jo"}, fuzzymatching=True) == ["ROE^JOHN"]
    assert names(search_filters={"PatientName": "do jo"}, fuzzymatching=True) == []


def test_fuzzymatching_must_be_true_or_false(services: Any, store: StoreRef) -> None:
    url = f"{services.healthcare_url}/v1/{store.name}/dicomWeb/studies"
    answer = requests.get(url, params={"fuzzymatching": "maybe"}, timeout=30)
    assert answer.status_code == 400
    assert "fuzzymatching must be true or false" in answer.json()["error"]["message"]


@pytest.fixture
def literal_server(tmp_path: Path) -> Iterator[EmulatorServer]:
    """An emulator started without fuzzy matching (``--no-fuzzy-matching``), on a free port."""
    with EmulatorServer(tmp_path / "data", GcsClient.for_endpoint(None), fuzzy_matching=False) as server:
        yield server


def test_without_fuzzy_matching_the_answer_carries_warning_299(literal_server: EmulatorServer) -> None:
    base = literal_server.url
    requests.post(f"{base}/v1/projects/p/locations/l/datasets?datasetId=d", json={}, timeout=30).raise_for_status()
    stores = f"{base}/v1/projects/p/locations/l/datasets/d/dicomStores"
    requests.post(f"{stores}?dicomStoreId=s", json={}, timeout=30).raise_for_status()
    web = DICOMwebClient(url=f"{stores}/s/dicomWeb")
    _store(web, _named("DOE^JANE", 1821))
    url = f"{stores}/s/dicomWeb/studies"
    # WHEN fuzzy matching is asked of a server that does not do it
    answer = requests.get(url, params={"PatientName": "DOE^JANE", "fuzzymatching": "true"}, timeout=30)
    # THEN literal matching is done and the PS3.18 8.3.4.2 warning says so
    assert answer.status_code == 200
    assert answer.headers["Warning"] == (
        f"299 {base}: The fuzzymatching parameter is not supported. Only literal matching has been performed."
    )
    assert requests.get(url, params={"PatientName": "jan", "fuzzymatching": "true"}, timeout=30).status_code == 204
    # AND without fuzzymatching there is no warning
    assert "Warning" not in requests.get(url, params={"PatientName": "DOE^JANE"}, timeout=30).headers


# ----- frames -----


@pytest.fixture
def multiframe(web: DICOMwebClient) -> SyntheticInstance:
    instance = generate_dataset(1, 1, 1, seed=1831, multiframe_every=1)[0]
    _store(web, instance.data)
    return instance


def _frames_url(services: Any, store: StoreRef, instance: SyntheticInstance, frames: str) -> str:
    return (
        f"{services.healthcare_url}/v1/{store.name}/dicomWeb/studies/{instance.study_uid}/series/"
        f"{instance.series_uid}/instances/{instance.sop_uid}/frames/{frames}"
    )


def test_frames_come_as_jpeg_when_dicomweb_client_asks_for_it(
    web: DICOMwebClient, multiframe: SyntheticInstance
) -> None:
    dataset = pydicom.dcmread(io.BytesIO(multiframe.data))
    assert int(dataset.NumberOfFrames) >= 2
    # WHEN dicomweb-client asks for two frames as image/jpeg
    frames = web.retrieve_instance_frames(
        multiframe.study_uid, multiframe.series_uid, multiframe.sop_uid, [1, 2], media_types=("image/jpeg",)
    )
    # THEN each part is a JPEG of the instance's size
    assert len(frames) == 2
    for frame in frames:
        image = Image.open(io.BytesIO(frame))
        assert (image.format, image.size) == ("JPEG", (dataset.Columns, dataset.Rows))
    assert frames[0] != frames[1]


def test_frames_come_as_png_parts_on_a_multipart_png_accept(
    services: Any, store: StoreRef, multiframe: SyntheticInstance
) -> None:
    answer = requests.get(
        _frames_url(services, store, multiframe, "2,1"),
        headers={"Accept": 'multipart/related; type="image/png"'},
        timeout=30,
    )
    assert answer.headers["Content-Type"].startswith('multipart/related; type="image/png"')
    parts = parse_multipart_related(answer.content, answer.headers["Content-Type"])
    assert [part_type for part_type, _ in parts] == ["image/png", "image/png"]
    assert all(Image.open(io.BytesIO(data)).format == "PNG" for _, data in parts)


def test_frames_media_types_raw_single_part_and_406(
    services: Any, store: StoreRef, multiframe: SyntheticInstance
) -> None:
    url = _frames_url(services, store, multiframe, "1")
    # the default is raw octets in multipart/related
    raw = requests.get(url, timeout=30)
    assert raw.headers["Content-Type"].startswith('multipart/related; type="application/octet-stream"')
    # a single-part image type gives the image itself
    png = requests.get(url, headers={"Accept": "image/png"}, timeout=30)
    assert (png.status_code, png.headers["Content-Type"]) == (200, "image/png")
    assert Image.open(io.BytesIO(png.content)).format == "PNG"
    # types the emulator cannot produce are 406
    for accept in (
        'multipart/related; type="image/jp2"',
        "image/jls",
        'multipart/related; type="image/jpeg"; transfer-syntax=1.2.840.10008.1.2.4.70',
    ):
        refused = requests.get(url, headers={"Accept": accept}, timeout=30)
        assert refused.status_code == 406, accept
    # one single-part image cannot carry two frames
    two = requests.get(_frames_url(services, store, multiframe, "1,2"), headers={"Accept": "image/jpeg"}, timeout=30)
    assert two.status_code == 406


# ----- bulk data -----


def test_metadata_refers_to_bulk_data_that_the_bulkdata_route_returns(web: DICOMwebClient) -> None:
    # GIVEN an instance with pixel data and a private binary value over 1 KiB
    instance = generate_dataset(1, 1, 1, seed=1841)[0]
    dataset = pydicom.dcmread(io.BytesIO(instance.data))
    blob = bytes(range(256)) * 8
    dataset.add_new(0x00091010, "LO", "EMULATOR TEST")
    dataset.add_new(0x00091011, "OB", blob)
    web.store_instances([dataset])
    # WHEN its metadata is read
    metadata = web.retrieve_instance_metadata(instance.study_uid, instance.series_uid, instance.sop_uid)
    pixel_uri = metadata["7FE00010"]["BulkDataURI"]
    private_uri = metadata["00091011"]["BulkDataURI"]
    # THEN the URIs are absolute, under the instance, and return the values
    instance_url = f"{web.base_url}/studies/{instance.study_uid}/series/{instance.series_uid}/instances/"
    assert pixel_uri == f"{instance_url}{instance.sop_uid}/bulkdata/7FE00010"
    assert web.retrieve_bulkdata(private_uri) == [blob]
    assert web.retrieve_bulkdata(pixel_uri) == [bytes(dataset.PixelData)]
    # AND small values stay inline
    assert metadata["00091010"]["Value"] == ["EMULATOR TEST"]


def test_bulkdata_of_a_compressed_instance_is_uncompressed(web: DICOMwebClient) -> None:
    instance = generate_dataset(1, 1, 1, seed=1842, compressed_every=1)[0]
    _store(web, instance.data)
    metadata = web.retrieve_instance_metadata(instance.study_uid, instance.series_uid, instance.sop_uid)
    [value] = web.retrieve_bulkdata(metadata["7FE00010"]["BulkDataURI"])
    pixels = pydicom.dcmread(io.BytesIO(instance.data)).pixel_array
    assert value == pixels.astype(pixels.dtype.newbyteorder("<")).tobytes()


def test_bulkdata_of_an_unknown_element_is_404(services: Any, store: StoreRef, web: DICOMwebClient) -> None:
    instance = generate_dataset(1, 1, 1, seed=1843)[0]
    _store(web, instance.data)
    base = f"{services.healthcare_url}/v1/{store.name}/dicomWeb/studies/{instance.study_uid}/series/"
    url = f"{base}{instance.series_uid}/instances/{instance.sop_uid}/bulkdata/00099999"
    missing = requests.get(url, timeout=30)
    assert missing.status_code == 404
    assert "no element 00099999" in missing.json()["error"]["message"]


# ----- URLs handed out -----


def test_retrieve_url_comes_from_the_server_address_not_the_host_header(services: Any, store: StoreRef) -> None:
    instance = generate_dataset(1, 1, 1, seed=1851)[0]
    # WHEN a client sends Host without the port (as some proxies and clients do)
    answer = requests.post(
        f"{services.healthcare_url}/v1/{store.name}/dicomWeb/studies",
        data=instance.data,
        headers={"Content-Type": "application/dicom", "Accept": "application/dicom+json", "Host": "127.0.0.1"},
        timeout=30,
    )
    # THEN the RetrieveURL still names the server's own address, port included, and works
    retrieve_url = answer.json()["00081199"]["Value"][0]["00081190"]["Value"][0]
    assert retrieve_url == (
        f"{services.healthcare_url}/v1/{store.name}/dicomWeb/studies/{instance.study_uid}"
        f"/series/{instance.series_uid}/instances/{instance.sop_uid}"
    )
    assert requests.get(retrieve_url, headers={"Accept": "application/dicom"}, timeout=30).content == instance.data

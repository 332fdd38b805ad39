"""DICOMweb on the emulator through dicomweb-client: STOW-RS, QIDO-RS, WADO-RS and DELETE."""

from __future__ import annotations

import io
from typing import Any

import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from PIL import Image

from devstack.synthetic import SyntheticInstance, generate_dataset, make_instance
from tests.integration.conftest import StoreRef

pytestmark = pytest.mark.integration

EXPLICIT_LE = "1.2.840.10008.1.2.1"
RLE = "1.2.840.10008.1.2.5"


@pytest.fixture
def web(services: Any, store: StoreRef) -> DICOMwebClient:
    return DICOMwebClient(url=f"{services.healthcare_url}/v1/{store.name}/dicomWeb")


@pytest.fixture
def stored(web: DICOMwebClient) -> list[SyntheticInstance]:
    instances = generate_dataset(2, 2, 2, seed=201, multiframe_every=4, compressed_every=3)
    response = web.store_instances([pydicom.dcmread(io.BytesIO(i.data)) for i in instances])
    assert len(response.ReferencedSOPSequence) == len(instances)
    return instances


def _value(item: dict[str, Any], tag: str) -> Any:
    return item[tag]["Value"][0]


def test_stow_reports_stored_duplicate_and_conflicting_instances(web: DICOMwebClient) -> None:
    # GIVEN a stored instance
    first = generate_dataset(1, 1, 1, seed=211)[0]
    dataset = pydicom.dcmread(io.BytesIO(first.data))
    stored = web.store_instances([dataset])
    assert _uid_list(stored.ReferencedSOPSequence) == [first.sop_uid]
    assert stored.ReferencedSOPSequence[0].RetrieveURL.endswith(f"/instances/{first.sop_uid}")
    # WHEN the identical instance is stored again THEN it is accepted (ignored, not overwritten)
    again = web.store_instances([dataset])
    assert _uid_list(again.ReferencedSOPSequence) == [first.sop_uid]
    # WHEN different bytes with the same UIDs arrive with a new instance THEN that one fails as a duplicate SOP
    other = make_instance(study_uid=first.study_uid, series_uid=first.series_uid, sop_uid=first.sop_uid, seed=5)
    fresh = generate_dataset(1, 1, 1, seed=212)[0]
    mixed = web.store_instances([pydicom.dcmread(io.BytesIO(other)), pydicom.dcmread(io.BytesIO(fresh.data))])
    assert _uid_list(mixed.ReferencedSOPSequence) == [fresh.sop_uid]
    assert mixed.FailedSOPSequence[0].ReferencedSOPInstanceUID == first.sop_uid
    assert mixed.FailedSOPSequence[0].FailureReason == 0x0111
    # AND the stored bytes are the first ones
    assert (
        web.retrieve_instance(
            first.study_uid, first.series_uid, first.sop_uid, media_types=(("application/dicom", "*"),)
        ).SOPInstanceUID
        == first.sop_uid
    )


def _uid_list(sequence: Any) -> list[str]:
    return [str(item.ReferencedSOPInstanceUID) for item in sequence]


def test_stow_of_a_non_dicom_part_is_a_409_with_failure(services: Any, store: StoreRef) -> None:
    url = f"{services.healthcare_url}/v1/{store.name}/dicomWeb/studies"
    body = b"--XX\r\nContent-Type: application/dicom\r\n\r\nnot dicom\r\n--XX--\r\n"
    response = requests.post(
        url,
        data=body,
        headers={"Content-Type": 'multipart/related; type="application/dicom"; boundary=XX'},
        timeout=10,
    )
    assert response.status_code == 409
    assert "00081198" in response.json()


def test_qido_searches_every_level(web: DICOMwebClient, stored: list[SyntheticInstance]) -> None:
    studies = web.search_for_studies()
    assert sorted(_value(s, "0020000D") for s in studies) == sorted({i.study_uid for i in stored})
    assert {int(_value(s, "00201208")) for s in studies} == {4}  # NumberOfStudyRelatedInstances
    study = stored[0].study_uid
    series = web.search_for_series(study_instance_uid=study)
    assert sorted(_value(s, "0020000E") for s in series) == sorted(
        {i.series_uid for i in stored if i.study_uid == study}
    )
    instances = web.search_for_instances(study_instance_uid=study, series_instance_uid=stored[0].series_uid)
    assert sorted(_value(i, "00080018") for i in instances) == sorted(
        i.sop_uid for i in stored if i.series_uid == stored[0].series_uid
    )
    assert len(web.search_for_instances()) == len(stored)
    assert len(web.search_for_series()) == 4


def test_qido_filters_by_patient_modality_and_paging(web: DICOMwebClient, stored: list[SyntheticInstance]) -> None:
    target = stored[0]
    by_id = web.search_for_studies(search_filters={"PatientID": target.patient_id})
    assert [_value(s, "0020000D") for s in by_id] == [target.study_uid]
    name_prefix = target.patient_name.split("^")[0].lower() + "*"
    assert len(web.search_for_studies(search_filters={"PatientName": name_prefix})) == 2
    assert web.search_for_studies(search_filters={"PatientName": "nobody*"}) == []
    assert len(web.search_for_studies(search_filters={"StudyDate": "19000101-20991231"})) == 2
    assert web.search_for_studies(search_filters={"StudyDate": "-19000101"}) == []
    assert len(web.search_for_series(search_filters={"Modality": "CT"})) == 2  # studies alternate CT, MR
    assert len(web.search_for_studies(search_filters={"ModalitiesInStudy": "MR"})) == 1
    assert len(web.search_for_instances(limit=3)) == 3
    assert len(web.search_for_instances(offset=6)) == len(stored) - 6
    with_field = web.search_for_studies(fields=["StudyDescription"], search_filters={"PatientID": target.patient_id})
    assert "00081030" in with_field[0]


def test_qido_rejects_an_unknown_attribute(services: Any, store: StoreRef) -> None:
    response = requests.get(f"{services.healthcare_url}/v1/{store.name}/dicomWeb/studies?NoSuchKeyword=1", timeout=10)
    assert response.status_code == 400
    assert "NoSuchKeyword" in response.json()["error"]["message"]


def test_wado_retrieves_instances_series_studies_and_metadata(
    web: DICOMwebClient, stored: list[SyntheticInstance]
) -> None:
    compressed = next(i for i in stored if i.transfer_syntax == RLE)
    # transfer-syntax=* returns the stored bytes
    as_stored = web.retrieve_instance(
        compressed.study_uid,
        compressed.series_uid,
        compressed.sop_uid,
        media_types=(("application/dicom", "*"),),
    )
    assert as_stored.file_meta.TransferSyntaxUID == RLE
    # asking for Explicit VR Little Endian transcodes
    explicit = web.retrieve_instance(
        compressed.study_uid,
        compressed.series_uid,
        compressed.sop_uid,
        media_types=(("application/dicom", EXPLICIT_LE),),
    )
    assert explicit.file_meta.TransferSyntaxUID == EXPLICIT_LE
    assert (explicit.pixel_array == as_stored.pixel_array).all()
    series = web.retrieve_series(compressed.study_uid, compressed.series_uid, media_types=(("application/dicom", "*"),))
    assert sorted(d.SOPInstanceUID for d in series) == sorted(
        i.sop_uid for i in stored if i.series_uid == compressed.series_uid
    )
    study = web.retrieve_study(compressed.study_uid, media_types=(("application/dicom", "*"),))
    assert len(study) == 4
    metadata = web.retrieve_study_metadata(compressed.study_uid)
    assert len(metadata) == 4
    # pixel data is referred to by URI, never inlined
    assert all(set(item["7FE00010"]) == {"vr", "BulkDataURI"} for item in metadata)


def test_wado_frames_and_rendered(web: DICOMwebClient, stored: list[SyntheticInstance]) -> None:
    multi = next(i for i in stored if i.frames > 1)
    frames = web.retrieve_instance_frames(
        multi.study_uid, multi.series_uid, multi.sop_uid, frame_numbers=[1, multi.frames]
    )
    assert [len(f) for f in frames] == [32 * 32 * 2, 32 * 32 * 2]
    assert frames[0] != frames[1]
    png = web.retrieve_instance_frames_rendered(
        multi.study_uid, multi.series_uid, multi.sop_uid, frame_numbers=[2], media_types=("image/png",)
    )
    assert Image.open(io.BytesIO(png)).format == "PNG"
    jpeg = web.retrieve_instance_rendered(multi.study_uid, multi.series_uid, multi.sop_uid)
    assert Image.open(io.BytesIO(jpeg)).format == "JPEG"


def test_wado_missing_resources_are_404(web: DICOMwebClient, stored: list[SyntheticInstance]) -> None:
    with pytest.raises(requests.HTTPError) as missing:
        web.retrieve_instance(stored[0].study_uid, stored[0].series_uid, "1.2.3.4")
    assert missing.value.response.status_code == 404
    with pytest.raises(requests.HTTPError) as no_frame:
        web.retrieve_instance_frames(stored[0].study_uid, stored[0].series_uid, stored[0].sop_uid, frame_numbers=[9])
    assert no_frame.value.response.status_code == 404


def test_delete_instance_series_and_study(web: DICOMwebClient, stored: list[SyntheticInstance]) -> None:
    first = stored[0]
    web.delete_instance(first.study_uid, first.series_uid, first.sop_uid)
    assert len(web.search_for_instances()) == len(stored) - 1
    web.delete_study(first.study_uid)
    _wait_until(lambda: len(web.search_for_instances()) == 4)
    other = next(i for i in stored if i.study_uid != first.study_uid)
    web.delete_series(other.study_uid, other.series_uid)
    _wait_until(lambda: len(web.search_for_instances()) == 2)


def test_deleting_an_instance_is_synchronous_and_frees_its_uids(services: Any, store: StoreRef) -> None:
    # GIVEN a stored instance (as the API documents: instances.delete answers an empty JSON object, no operation;
    # studies.delete and series.delete answer a long-running operation)
    base = f"{services.healthcare_url}/v1/{store.name}/dicomWeb"
    first = make_instance(study_uid="2.25.9101", series_uid="2.25.9102", sop_uid="2.25.9103", patient_name="A^B")
    headers = {"Content-Type": "application/dicom"}
    assert requests.post(f"{base}/studies", data=first, headers=headers, timeout=30).status_code == 200
    path = f"{base}/studies/2.25.9101/series/2.25.9102/instances/2.25.9103"
    # WHEN it is deleted THEN the answer is an empty object and the instance is gone at once
    deleted = requests.delete(path, timeout=30)
    assert (deleted.status_code, deleted.json()) == (200, {})
    assert requests.get(path, headers={"Accept": "application/dicom; transfer-syntax=*"}, timeout=30).status_code == 404
    # AND deleting it again is a 404 (nothing there)
    assert requests.delete(path, timeout=30).status_code == 404
    # AND the same UIDs now take other content, which is what is retrieved
    other = make_instance(study_uid="2.25.9101", series_uid="2.25.9102", sop_uid="2.25.9103", patient_name="C^D")
    assert requests.post(f"{base}/studies", data=other, headers=headers, timeout=30).status_code == 200
    retrieved = requests.get(path, headers={"Accept": "application/dicom; transfer-syntax=*"}, timeout=30)
    assert retrieved.status_code == 200 and retrieved.content == other
    # AND a series delete is an operation
    series = requests.delete(f"{base}/studies/2.25.9101/series/2.25.9102", timeout=30).json()
    assert series["name"].startswith(f"{store.dataset_name}/operations/")


def _wait_until(condition: Any, timeout: float = 10.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_wado_default_transfer_syntax_is_explicit_vr_little_endian(
    services: Any, store: StoreRef, web: DICOMwebClient, stored: list[SyntheticInstance]
) -> None:
    compressed = next(i for i in stored if i.transfer_syntax == RLE)
    url = (
        f"{services.healthcare_url}/v1/{store.name}/dicomWeb/studies/{compressed.study_uid}"
        f"/series/{compressed.series_uid}/instances/{compressed.sop_uid}"
    )
    # GIVEN an Accept without transfer-syntax (DICOMweb's default is Explicit VR Little Endian)
    response = requests.get(url, headers={"Accept": 'multipart/related; type="application/dicom"'}, timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("multipart/related")
    from healthcare_emulator.multipart import parse_multipart_related

    [(part_type, data)] = parse_multipart_related(response.content, response.headers["Content-Type"])
    assert part_type == "application/dicom"
    assert pydicom.dcmread(io.BytesIO(data)).file_meta.TransferSyntaxUID == EXPLICIT_LE
    # AND an unsupported target is a 406 naming it
    refused = requests.get(
        url,
        headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.80'},
        timeout=10,
    )
    assert refused.status_code == 406
    assert "1.2.840.10008.1.2.4.80" in refused.json()["error"]["message"]

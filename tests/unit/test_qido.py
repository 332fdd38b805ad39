"""QIDO-RS matching, grouping, computed attributes, paging and include fields."""

from __future__ import annotations

import io
from typing import Any

import pydicom
import pytest

from devstack.synthetic import generate_dataset, make_instance
from healthcare_emulator.qido import QueryError, dataset_to_metadata, search


def _metadata(data: bytes) -> dict[str, Any]:
    return dataset_to_metadata(pydicom.dcmread(io.BytesIO(data), stop_before_pixels=False))


@pytest.fixture(scope="module")
def store() -> list[dict[str, Any]]:
    # 3 studies (CT, MR, CT) x 2 series x 2 instances
    return [_metadata(i.data) for i in generate_dataset(3, 2, 2, seed=5)]


@pytest.fixture(scope="module")
def synthetic() -> list[Any]:
    return generate_dataset(3, 2, 2, seed=5)


def _uids(results: list[dict[str, Any]], tag: str) -> list[str]:
    return [r[tag]["Value"][0] for r in results]


def test_dataset_to_metadata_drops_pixel_data_and_large_binary() -> None:
    data = make_instance(study_uid="1.2", series_uid="1.2.3", sop_uid="1.2.3.4")
    metadata = _metadata(data)
    assert "7FE00010" not in metadata
    assert metadata["0020000D"] == {"vr": "UI", "Value": ["1.2"]}
    assert metadata["00100010"]["Value"][0] == {"Alphabetic": "SYNTH^ALICE^0001"}


def test_search_studies_groups_and_counts(store: list[dict[str, Any]]) -> None:
    studies = search("studies", store, {})
    assert len(studies) == 3
    assert {s["00201206"]["Value"][0] for s in studies} == {2}
    assert {s["00201208"]["Value"][0] for s in studies} == {4}
    assert sorted(s["00080061"]["Value"][0] for s in studies) == ["CT", "CT", "MR"]
    assert "00080018" not in studies[0]


def test_search_matches_patient_name_wildcard_case_insensitively(
    store: list[dict[str, Any]], synthetic: list[Any]
) -> None:
    name = synthetic[0].patient_name
    assert len(search("studies", store, {"PatientName": [name.lower()]})) == 1
    assert len(search("studies", store, {"PatientName": ["synth^*"]})) == 3
    assert len(search("studies", store, {"PatientName": [name[:-1] + "?"]})) == 1
    assert search("studies", store, {"PatientName": ["synth"]}) == []


def test_search_by_uid_list_and_tag_key(store: list[dict[str, Any]], synthetic: list[Any]) -> None:
    wanted = [synthetic[0].study_uid, synthetic[-1].study_uid]
    assert sorted(_uids(search("studies", store, {"StudyInstanceUID": [",".join(wanted)]}), "0020000D")) == sorted(
        wanted
    )
    assert _uids(search("studies", store, {"0020000D": [wanted[0]]}), "0020000D") == [wanted[0]]


def test_search_date_ranges(store: list[dict[str, Any]]) -> None:
    assert len(search("studies", store, {"StudyDate": ["20240101"]})) == 3
    assert len(search("studies", store, {"StudyDate": ["20231201-20240131"]})) == 3
    assert len(search("studies", store, {"StudyDate": ["-20231231"]})) == 0
    assert len(search("studies", store, {"StudyDate": ["20240102-"]})) == 0


def test_search_modality_at_every_level(store: list[dict[str, Any]]) -> None:
    assert len(search("series", store, {"Modality": ["MR"]})) == 2
    assert len(search("studies", store, {"ModalitiesInStudy": ["CT"]})) == 2
    assert len(search("studies", store, {"Modality": ["CT"]})) == 2
    assert len(search("instances", store, {"Modality": ["CT"]})) == 8


def test_search_lower_level_by_higher_level_attribute(store: list[dict[str, Any]], synthetic: list[Any]) -> None:
    found = search("instances", store, {"PatientID": [synthetic[0].patient_id]})
    assert sorted(_uids(found, "00080018")) == sorted(
        i.sop_uid for i in synthetic if i.patient_id == synthetic[0].patient_id
    )
    # across studies, series and instances carry the study attributes too
    assert "00100020" in found[0]


def test_search_within_study_and_series(store: list[dict[str, Any]], synthetic: list[Any]) -> None:
    first = synthetic[0]
    series = search("series", store, {}, study_uid=first.study_uid)
    assert len(series) == 2
    assert all(s["00201209"]["Value"] == [2] for s in series)
    assert "00100020" not in series[0]  # within a study, study attributes are not repeated
    instances = search("instances", store, {}, study_uid=first.study_uid, series_uid=first.series_uid)
    assert _uids(instances, "00080018") == [i.sop_uid for i in synthetic if i.series_uid == first.series_uid]


def test_search_limit_offset_and_ordering(store: list[dict[str, Any]]) -> None:
    everything = search("instances", store, {})
    assert search("instances", store, {"limit": ["5"]}) == everything[:5]
    assert search("instances", store, {"offset": ["10"]}) == everything[10:]
    assert search("instances", store, {"limit": ["2"], "offset": ["3"]}) == everything[3:5]


def test_search_includefield(store: list[dict[str, Any]]) -> None:
    [study] = search("studies", store, {"includefield": ["Manufacturer,00081030"], "limit": ["1"]})
    assert "00080070" in study
    [everything] = search("studies", store, {"includefield": ["all"], "limit": ["1"]})
    assert "00280010" in everything  # Rows, from the first instance


def test_search_empty_value_is_universal_matching(store: list[dict[str, Any]]) -> None:
    assert len(search("studies", store, {"PatientID": [""], "fuzzymatching": ["true"]})) == 3


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"NoSuchKeyword": ["1"]}, "NoSuchKeyword"),
        ({"limit": ["-1"]}, "limit"),
        ({"offset": ["x"]}, "offset"),
        ({"includefield": ["Bogus"]}, "Bogus"),
    ],
)
def test_search_rejects_bad_parameters_naming_them(
    store: list[dict[str, Any]], params: dict[str, list[str]], message: str
) -> None:
    with pytest.raises(QueryError, match=message):
        search("studies", store, params)

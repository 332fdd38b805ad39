"""QIDO-RS search: matching rules, grouping, computed attributes, ordering, paging and include fields."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag

from healthcare_emulator.qido import Level, QueryError, dataset_to_metadata, search

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"

STUDY_A, STUDY_B, STUDY_C, STUDY_D = "1.2.840.9.1", "1.2.840.9.2", "1.2.840.9.3", "1.2.840.9.4"
SERIES_A1, SERIES_A2, SERIES_B1, SERIES_C1, SERIES_D1 = (
    "1.2.840.9.1.1",
    "1.2.840.9.1.2",
    "1.2.840.9.2.1",
    "1.2.840.9.3.1",
    "1.2.840.9.4.1",
)

# DICOM JSON tags used in assertions
PATIENT_NAME, PATIENT_ID, PATIENT_AGE = "00100010", "00100020", "00101010"
STUDY_UID, SERIES_UID, SOP_UID, SOP_CLASS = "0020000D", "0020000E", "00080018", "00080016"
STUDY_DATE, STUDY_DESCRIPTION, MODALITY, MODALITIES_IN_STUDY = "00080020", "00081030", "00080060", "00080061"
SERIES_NUMBER, INSTANCE_NUMBER, MANUFACTURER, ROWS = "00200011", "00200013", "00080070", "00280010"
STUDY_SERIES_COUNT, STUDY_INSTANCE_COUNT, SERIES_INSTANCE_COUNT = "00201206", "00201208", "00201209"


def _instance(study: str, series: str, sop: str, **attributes: Any) -> dict[str, Any]:
    """The metadata the emulator keeps for one instance (UIDs plus the given keyword attributes)."""
    dataset = Dataset()
    dataset.SOPClassUID = CT_IMAGE
    dataset.StudyInstanceUID = study
    dataset.SeriesInstanceUID = series
    dataset.SOPInstanceUID = sop
    for keyword, value in attributes.items():
        setattr(dataset, keyword, value)
    return dataset_to_metadata(dataset)


STUDY_A_ATTRIBUTES = {
    "SpecificCharacterSet": "ISO_IR 192",
    "PatientName": "DOE^JANE",
    "PatientID": "P001",
    "PatientBirthDate": "19700101",
    "PatientSex": "F",
    "PatientAge": "054Y",
    "StudyDate": "20240110",
    "StudyTime": "101500",
    "AccessionNumber": "ACC-1",
    "ReferringPhysicianName": "WHO^DOCTOR",
    "StudyID": "S1",
    "StudyDescription": "CT CHEST",
}
SERIES_A1_ATTRIBUTES = {
    "Modality": "CT",
    "SeriesNumber": 1,
    "SeriesDescription": "Axial 5mm",
    "SeriesDate": "20240110",
    "Manufacturer": "ACME",
    "BodyPartExamined": "CHEST",
    "PerformedProcedureStepStartDate": "20240110",
    "PerformedProcedureStepStartTime": "101000",
}
IMAGE = {"Rows": 4, "Columns": 6, "BitsAllocated": 16}


def _store() -> list[dict[str, Any]]:
    """4 studies, 5 series, 7 instances.

    A (2024-01-10, P001): series A1 CT #1 (2 instances, numbered 2 and 1), series A2 SR #2 (1 instance);
    B (2023-12-31, P002): series B1 MR #1 (2 multi-frame instances); C (2024-02-01, P001, no description):
    series C1 CT #3 (1 instance); D (no date, P003): series D1 OT without number (1 instance without number).
    """
    return [
        _instance(STUDY_A, SERIES_A1, "1.2.840.9.1.1.1", **STUDY_A_ATTRIBUTES, **SERIES_A1_ATTRIBUTES, **IMAGE,
                  InstanceNumber=2, ImageType=["ORIGINAL", "PRIMARY", "AXIAL"]),
        _instance(STUDY_A, SERIES_A1, "1.2.840.9.1.1.2", **STUDY_A_ATTRIBUTES, **SERIES_A1_ATTRIBUTES, **IMAGE,
                  InstanceNumber=1, ImageType=["ORIGINAL", "PRIMARY", "AXIAL"]),
        _instance(STUDY_A, SERIES_A2, "1.2.840.9.1.2.1", **STUDY_A_ATTRIBUTES, Modality="SR", SeriesNumber=2,
                  SeriesDescription="Report", InstanceNumber=1, SOPClassUID=BASIC_TEXT_SR),
        _instance(STUDY_B, SERIES_B1, "1.2.840.9.2.1.1", PatientName="Smith^John", PatientID="P002",
                  StudyDate="20231231", StudyTime="230000", AccessionNumber="ACC-2", StudyDescription="MR BRAIN",
                  Modality="MR", SeriesNumber=1, SeriesDescription="T1 axial", SeriesDate="20231231",
                  InstanceNumber=1, SOPClassUID=MR_IMAGE, NumberOfFrames=3, **IMAGE),
        _instance(STUDY_B, SERIES_B1, "1.2.840.9.2.1.2", PatientName="Smith^John", PatientID="P002",
                  StudyDate="20231231", StudyTime="230000", AccessionNumber="ACC-2", StudyDescription="MR BRAIN",
                  Modality="MR", SeriesNumber=1, SeriesDescription="T1 axial", SeriesDate="20231231",
                  InstanceNumber=2, SOPClassUID=MR_IMAGE, NumberOfFrames=3, **IMAGE),
        _instance(STUDY_C, SERIES_C1, "1.2.840.9.3.1.1", PatientName="DOE^JANE^^^", PatientID="P001",
                  StudyDate="20240201", StudyTime="080000", AccessionNumber="ACC-3", Modality="CT", SeriesNumber=3,
                  SeriesDescription="Axial 1mm", InstanceNumber=1, **IMAGE),
        _instance(STUDY_D, SERIES_D1, "1.2.840.9.4.1.1", PatientName="O'BRIEN^PAT", PatientID="P003",
                  AccessionNumber="ACC-4", Modality="OT"),
    ]  # fmt: skip


@pytest.fixture
def store() -> list[dict[str, Any]]:
    return _store()


def _uids(results: list[dict[str, Any]], tag: str) -> list[str]:
    return [result[tag]["Value"][0] for result in results]


def _studies(store: list[dict[str, Any]], **params: str | list[str]) -> list[str]:
    """The StudyInstanceUIDs of ``/studies?params`` (a str value stands for one occurrence)."""
    query = {key: [value] if isinstance(value, str) else value for key, value in params.items()}
    return _uids(search("studies", store, query), STUDY_UID)


# ----- dataset_to_metadata -----


def test_dataset_to_metadata_is_the_dicom_json_of_the_header() -> None:
    metadata = _instance(STUDY_A, SERIES_A1, "1.2.3", PatientName="DOE^JANE", InstanceNumber="7", Modality="CT")
    assert metadata[STUDY_UID] == {"vr": "UI", "Value": [STUDY_A]}
    assert metadata[PATIENT_NAME] == {"vr": "PN", "Value": [{"Alphabetic": "DOE^JANE"}]}
    assert metadata[INSTANCE_NUMBER] == {"vr": "IS", "Value": [7]}
    assert metadata[MODALITY] == {"vr": "CS", "Value": ["CT"]}
    assert list(metadata) == sorted(metadata)


def test_dataset_to_metadata_refers_to_pixel_data_and_binary_elements_over_1_kib_by_bulkdata_uri() -> None:
    dataset = Dataset()
    dataset.StudyInstanceUID = "1.2"
    dataset.PixelData = b"\0" * 8  # pixel data goes whatever its size
    dataset.add_new(0x00291010, "OB", b"\1" * 1024)  # exactly 1 KiB: kept inline
    dataset.add_new(0x00291011, "OB", b"\1" * 1026)
    dataset.add_new(0x00291012, "OW", b"\1" * 2048)
    dataset.add_new(0x00291013, "UN", b"\1" * 1026)
    item = Dataset()
    item.CodeValue = "X"
    item.add_new(0x00291011, "OB", b"\1" * 4096)
    dataset.ReferencedImageSequence = Sequence([item])
    metadata = dataset_to_metadata(dataset)
    assert metadata["7FE00010"] == {"vr": "OB", "BulkDataURI": "bulkdata/7FE00010"}
    assert metadata["00291010"]["vr"] == "OB"
    assert len(metadata["00291010"]["InlineBinary"]) == 1368  # base64 of 1024 bytes
    assert metadata["00291011"] == {"vr": "OB", "BulkDataURI": "bulkdata/00291011"}
    assert metadata["00291012"] == {"vr": "OW", "BulkDataURI": "bulkdata/00291012"}
    assert metadata["00291013"] == {"vr": "UN", "BulkDataURI": "bulkdata/00291013"}
    assert metadata["00081140"]["Value"] == [
        {
            "00080100": {"vr": "SH", "Value": ["X"]},
            "00291011": {"vr": "OB", "BulkDataURI": "bulkdata/00081140/0/00291011"},
        }
    ]


def test_dataset_to_metadata_adds_the_pixel_data_of_a_header_read_without_it() -> None:
    dataset = Dataset()
    dataset.StudyInstanceUID = "1.2"
    assert "7FE00010" not in dataset_to_metadata(dataset)
    assert dataset_to_metadata(dataset, "OW")["7FE00010"] == {"vr": "OW", "BulkDataURI": "bulkdata/7FE00010"}


def test_dataset_to_metadata_is_deterministic_whatever_the_order_attributes_were_set() -> None:
    first = Dataset()
    first.PatientID = "P"
    first.StudyInstanceUID = "1.2"
    first.Modality = "CT"
    second = Dataset()
    second.Modality = "CT"
    second.StudyInstanceUID = "1.2"
    second.PatientID = "P"
    assert json.dumps(dataset_to_metadata(first)) == json.dumps(dataset_to_metadata(second))


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_dataset_to_metadata_leaves_out_an_undecodable_element() -> None:
    dataset = Dataset()
    dataset.StudyInstanceUID = "1.2"
    dataset[0x00200011] = RawDataElement(Tag(0x00200011), "IS", 3, b"abc", 0, True, True)
    assert dataset_to_metadata(dataset) == {STUDY_UID: {"vr": "UI", "Value": ["1.2"]}}


# ----- studies: grouping, computed attributes, returned attributes, ordering -----


def test_search_studies_returns_one_result_per_study(store: list[dict[str, Any]]) -> None:
    assert sorted(_studies(store)) == [STUDY_A, STUDY_B, STUDY_C, STUDY_D]


def test_search_studies_computes_counts_and_sorted_modalities_in_study(store: list[dict[str, Any]]) -> None:
    study_a = search("studies", store, {"StudyInstanceUID": [STUDY_A]})[0]
    assert study_a[STUDY_SERIES_COUNT] == {"vr": "IS", "Value": [2]}
    assert study_a[STUDY_INSTANCE_COUNT] == {"vr": "IS", "Value": [3]}
    assert study_a[MODALITIES_IN_STUDY] == {"vr": "CS", "Value": ["CT", "SR"]}
    study_b = search("studies", store, {"StudyInstanceUID": [STUDY_B]})[0]
    assert (study_b[STUDY_SERIES_COUNT]["Value"], study_b[STUDY_INSTANCE_COUNT]["Value"]) == ([1], [2])
    assert study_b[MODALITIES_IN_STUDY]["Value"] == ["MR"]


def test_search_studies_returns_the_study_attributes_only(store: list[dict[str, Any]]) -> None:
    study_a = search("studies", store, {"StudyInstanceUID": [STUDY_A]})[0]
    assert set(study_a) == {
        "00080005", STUDY_DATE, "00080030", "00080050", "00080090", PATIENT_NAME, PATIENT_ID, "00100030",
        "00100040", STUDY_UID, "00200010", STUDY_DESCRIPTION, MODALITIES_IN_STUDY, STUDY_SERIES_COUNT,
        STUDY_INSTANCE_COUNT,
    }  # fmt: skip
    assert study_a[PATIENT_NAME] == {"vr": "PN", "Value": [{"Alphabetic": "DOE^JANE"}]}
    assert list(study_a) == sorted(study_a)


def test_search_studies_leaves_out_absent_attributes(store: list[dict[str, Any]]) -> None:
    study_c = search("studies", store, {"StudyInstanceUID": [STUDY_C]})[0]
    assert STUDY_DESCRIPTION not in study_c
    assert "00100030" not in study_c  # no PatientBirthDate either


def test_search_studies_orders_by_study_date_then_uid_with_undated_studies_last() -> None:
    store = [
        _instance("1.9", "1.9.1", "1.9.1.1"),
        _instance("1.5", "1.5.1", "1.5.1.1", StudyDate="20240102"),
        _instance("1.4", "1.4.1", "1.4.1.1", StudyDate="20240102"),
        _instance("1.7", "1.7.1", "1.7.1.1", StudyDate="20231231"),
        _instance("1.1", "1.1.1", "1.1.1.1"),
    ]
    assert _studies(store) == ["1.7", "1.4", "1.5", "1.1", "1.9"]


# ----- matching rules -----


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("doe^*", [STUDY_A, STUDY_C]),
        ("*SMITH*", [STUDY_B]),
        ("d?e^jan?", [STUDY_A, STUDY_C]),
        ("*", [STUDY_B, STUDY_A, STUDY_C, STUDY_D]),
        ("o'brien^*", [STUDY_D]),
        ("doe^j", []),
        ("?oe", []),
    ],
)
def test_search_studies_matches_patient_name_wildcard_case_insensitively(
    store: list[dict[str, Any]], pattern: str, expected: list[str]
) -> None:
    assert _studies(store, PatientName=pattern) == expected


def test_search_studies_matches_patient_name_without_wildcards_as_a_whole_case_insensitively(
    store: list[dict[str, Any]],
) -> None:
    assert _studies(store, PatientName="doe^jane") == [STUDY_A, STUDY_C]  # C is stored as DOE^JANE^^^
    assert _studies(store, PatientName="SMITH^JOHN") == [STUDY_B]
    assert _studies(store, PatientName="DOE") == []  # no component matching
    assert _studies(store, PatientName="JANE") == []


def test_search_studies_matches_patient_id_and_accession_number_exactly(store: list[dict[str, Any]]) -> None:
    assert _studies(store, PatientID="P001") == [STUDY_A, STUDY_C]
    assert _studies(store, PatientID="p001") == []
    assert _studies(store, PatientID="P00") == []
    assert _studies(store, AccessionNumber="ACC-2") == [STUDY_B]
    assert _studies(store, AccessionNumber="ACC-*") == [STUDY_B, STUDY_A, STUDY_C, STUDY_D]


@pytest.mark.parametrize(
    ("dates", "expected"),
    [
        ("20240110", [STUDY_A]),
        ("20231231-20240110", [STUDY_B, STUDY_A]),
        ("20240101-20240131", [STUDY_A]),
        ("-20240110", [STUDY_B, STUDY_A]),
        ("20240110-", [STUDY_A, STUDY_C]),
        ("20240111-20240131", []),
        ("20240201-20240101", []),
    ],
)
def test_search_studies_matches_study_date_values_and_ranges(
    store: list[dict[str, Any]], dates: str, expected: list[str]
) -> None:
    assert _studies(store, StudyDate=dates) == expected


@pytest.mark.parametrize("value", ["2024", "2024-01-10", "20240110-2024", "-", "yesterday", "20240110-20240111-"])
def test_search_rejects_a_malformed_date_naming_the_parameter(store: list[dict[str, Any]], value: str) -> None:
    with pytest.raises(QueryError, match=r"StudyDate must be a date \(YYYYMMDD\)"):
        search("studies", store, {"StudyDate": [value]})


@pytest.mark.parametrize(
    ("times", "expected"),
    [
        ("101500", [STUDY_A]),
        ("10", [STUDY_A]),  # a partial time covers its whole hour
        ("1015", [STUDY_A]),
        ("10:15:00", [STUDY_A]),
        ("080000-120000", [STUDY_A, STUDY_C]),
        ("-09", [STUDY_C]),
        ("2259-", [STUDY_B]),
    ],
)
def test_search_studies_matches_study_time_values_and_ranges(
    store: list[dict[str, Any]], times: str, expected: list[str]
) -> None:
    assert _studies(store, StudyTime=times) == expected


def test_search_rejects_a_malformed_time(store: list[dict[str, Any]]) -> None:
    with pytest.raises(QueryError, match="StudyTime must be a time"):
        search("studies", store, {"StudyTime": ["25h"]})


def test_search_studies_matches_study_description_wildcards_case_sensitively(store: list[dict[str, Any]]) -> None:
    assert _studies(store, StudyDescription="CT*") == [STUDY_A]
    assert _studies(store, StudyDescription="*BRAIN") == [STUDY_B]
    assert _studies(store, StudyDescription="?? *") == [STUDY_B, STUDY_A]
    assert _studies(store, StudyDescription="ct*") == []
    assert _studies(store, StudyDescription="CT CHEST") == [STUDY_A]


@pytest.mark.parametrize(
    "params",
    [
        {"StudyInstanceUID": f"{STUDY_C},{STUDY_B}"},
        {"StudyInstanceUID": f"{STUDY_C}\\{STUDY_B}"},
        {"StudyInstanceUID": f" {STUDY_C} , {STUDY_B} ,"},
        {"StudyInstanceUID": [STUDY_C, STUDY_B]},
        {"0020000D": f"{STUDY_B},{STUDY_C},1.2.3.4"},
    ],
)
def test_search_studies_matches_uid_lists(store: list[dict[str, Any]], params: dict[str, Any]) -> None:
    assert _studies(store, **params) == [STUDY_B, STUDY_C]


def test_search_studies_does_not_match_uid_prefixes_or_wildcards(store: list[dict[str, Any]]) -> None:
    assert _studies(store, StudyInstanceUID="1.2.840.9") == []
    assert _studies(store, StudyInstanceUID="1.2.840.9.*") == []


def test_search_accepts_tags_in_either_case_instead_of_keywords(store: list[dict[str, Any]]) -> None:
    assert _studies(store, **{"00100020": "P002"}) == [STUDY_B]
    assert _studies(store, **{"0020000d": STUDY_D}) == [STUDY_D]
    assert _studies(store, **{"00081030": "MR*"}) == [STUDY_B]


def test_search_matches_an_attribute_missing_from_the_dictionary_by_its_stored_value() -> None:
    dataset = Dataset()
    dataset.StudyInstanceUID = "1.2"
    dataset.add_new(0x00091010, "LO", "private value")
    store = [dataset_to_metadata(dataset)]
    assert _studies(store, **{"00091010": "private*"}) == ["1.2"]
    assert _studies(store, **{"00091010": "other"}) == []


def test_search_studies_by_modalities_in_study_or_by_modality_finds_studies_with_such_a_series(
    store: list[dict[str, Any]],
) -> None:
    assert _studies(store, ModalitiesInStudy="SR") == [STUDY_A]
    assert _studies(store, ModalitiesInStudy="CT") == [STUDY_A, STUDY_C]
    assert _studies(store, Modality="CT") == [STUDY_A, STUDY_C]
    assert _studies(store, **{"00080060": "MR"}) == [STUDY_B]
    assert _studies(store, ModalitiesInStudy="US") == []


def test_search_studies_by_several_series_attributes_needs_one_series_matching_them_all(
    store: list[dict[str, Any]],
) -> None:
    assert _studies(store, Modality="SR", SeriesDescription="Report") == [STUDY_A]
    assert _studies(store, Modality="CT", SeriesDescription="Report") == []
    assert _studies(store, Modality="CT", SeriesDescription="Axial*") == [STUDY_A, STUDY_C]


def test_search_with_several_keys_requires_all_of_them(store: list[dict[str, Any]]) -> None:
    assert _studies(store, PatientID="P001", StudyDate="20240201") == [STUDY_C]
    assert _studies(store, PatientID="P002", StudyDate="20240201") == []


def test_search_key_given_several_times_matches_any_of_its_values(store: list[dict[str, Any]]) -> None:
    assert _studies(store, PatientID=["P003", "P002"]) == [STUDY_B, STUDY_D]
    assert _studies(store, PatientName=["smith*", "o'*"]) == [STUDY_B, STUDY_D]


def test_search_empty_value_is_universal_matching_and_returns_the_attribute(store: list[dict[str, Any]]) -> None:
    studies = search("studies", store, {"PatientAge": [""], "PatientID": [""]})
    assert len(studies) == 4
    by_uid = {study[STUDY_UID]["Value"][0]: study for study in studies}
    assert by_uid[STUDY_A][PATIENT_AGE] == {"vr": "AS", "Value": ["054Y"]}
    assert PATIENT_AGE not in by_uid[STUDY_B]  # returned when present


def test_search_lone_star_is_universal_matching(store: list[dict[str, Any]]) -> None:
    assert len(_studies(store, StudyDate="*", StudyInstanceUID="*")) == 4


def test_search_returns_a_matching_key_of_the_level_even_when_not_a_default(store: list[dict[str, Any]]) -> None:
    [study] = search("studies", store, {"PatientAge": ["054Y"]})
    assert study[PATIENT_AGE]["Value"] == ["054Y"]
    [study] = search("studies", store, {"SeriesDescription": ["Report"]})
    assert "0008103E" not in study  # a series attribute is not returned with a study


def test_search_ignores_fuzzymatching_and_google_system_parameters(store: list[dict[str, Any]]) -> None:
    params = {"fuzzymatching": ["true"], "alt": ["json"], "prettyPrint": ["false"], "PatientName": ["doe^jane"]}
    assert _uids(search("studies", store, params), STUDY_UID) == [STUDY_A, STUDY_C]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"NoSuchKeyword": ["1"]}, "unknown attribute 'NoSuchKeyword'"),
        ({"patientid": ["P001"]}, "unknown attribute 'patientid'"),
        ({"0010002": ["P001"]}, "unknown attribute '0010002'"),
        ({"includefield": ["PatientID,Bogus"]}, "unknown attribute 'Bogus' in includefield"),
        ({"limit": ["-1"]}, "limit must be a non-negative integer, got '-1'"),
        ({"limit": ["ten"]}, "limit must be a non-negative integer"),
        ({"limit": [""]}, "limit must be a non-negative integer"),
        ({"offset": ["1.5"]}, "offset must be a non-negative integer"),
        ({"limit": ["1", "2"]}, "limit must be given once"),
        ({"SeriesNumber": ["one"]}, "SeriesNumber must be a number, got 'one'"),
        ({"ReferencedImageSequence": ["x"]}, "ReferencedImageSequence cannot be used as a matching key"),
        ({"PixelData": ["x"]}, "PixelData cannot be used as a matching key"),
    ],
)
def test_search_rejects_bad_parameters_naming_them(
    store: list[dict[str, Any]], params: dict[str, list[str]], message: str
) -> None:
    with pytest.raises(QueryError, match=message):
        search("studies", store, params)


# ----- series -----


def test_search_series_within_a_study_counts_instances_and_orders_by_series_number(
    store: list[dict[str, Any]],
) -> None:
    series = search("series", store, {}, study_uid=STUDY_A)
    assert _uids(series, SERIES_UID) == [SERIES_A1, SERIES_A2]
    assert [s[SERIES_INSTANCE_COUNT] for s in series] == [{"vr": "IS", "Value": [2]}, {"vr": "IS", "Value": [1]}]
    assert [s[MODALITY]["Value"] for s in series] == [["CT"], ["SR"]]


def test_search_series_within_a_study_returns_series_attributes_without_the_study_ones(
    store: list[dict[str, Any]],
) -> None:
    series_a1 = search("series", store, {}, study_uid=STUDY_A)[0]
    assert set(series_a1) == {
        MODALITY, "0008103E", SERIES_UID, SERIES_NUMBER, "00400244", "00400245", SERIES_INSTANCE_COUNT, STUDY_UID
    }  # fmt: skip
    assert series_a1["00400244"] == {"vr": "DA", "Value": ["20240110"]}  # PerformedProcedureStepStartDate


def test_search_series_across_studies_includes_the_study_attributes(store: list[dict[str, Any]]) -> None:
    series = search("series", store, {})
    assert len(series) == 5
    series_a2 = next(s for s in series if s[SERIES_UID]["Value"] == [SERIES_A2])
    assert series_a2[PATIENT_ID]["Value"] == ["P001"]
    assert series_a2[STUDY_DESCRIPTION]["Value"] == ["CT CHEST"]
    assert series_a2[MODALITIES_IN_STUDY]["Value"] == ["CT", "SR"]
    assert series_a2[STUDY_INSTANCE_COUNT]["Value"] == [3]
    assert series_a2[SERIES_INSTANCE_COUNT]["Value"] == [1]


def test_search_series_orders_by_series_number_then_uid_with_unnumbered_series_last(
    store: list[dict[str, Any]],
) -> None:
    assert _uids(search("series", store, {}), SERIES_UID) == [SERIES_A1, SERIES_B1, SERIES_A2, SERIES_C1, SERIES_D1]


def test_search_series_matches_modality_description_and_series_date(store: list[dict[str, Any]]) -> None:
    assert _uids(search("series", store, {"Modality": ["CT"]}), SERIES_UID) == [SERIES_A1, SERIES_C1]
    assert _uids(search("series", store, {"SeriesDescription": ["Axial*"]}), SERIES_UID) == [SERIES_A1, SERIES_C1]
    assert _uids(search("series", store, {"SeriesDescription": ["axial*"]}), SERIES_UID) == []
    assert _uids(search("series", store, {"SeriesDate": ["-20231231"]}), SERIES_UID) == [SERIES_B1]
    assert _uids(search("series", store, {"Modality": ["SR"]}, study_uid=STUDY_B), SERIES_UID) == []


def test_search_series_matches_series_number_numerically(store: list[dict[str, Any]]) -> None:
    assert _uids(search("series", store, {"SeriesNumber": ["03"]}), SERIES_UID) == [SERIES_C1]
    assert _uids(search("series", store, {"SeriesNumber": ["2"]}, study_uid=STUDY_A), SERIES_UID) == [SERIES_A2]


def test_search_series_by_an_instance_attribute_still_counts_every_instance(store: list[dict[str, Any]]) -> None:
    [series] = search("series", store, {"SOPInstanceUID": ["1.2.840.9.1.1.2"]})
    assert series[SERIES_UID]["Value"] == [SERIES_A1]
    assert series[SERIES_INSTANCE_COUNT]["Value"] == [2]


def test_search_series_by_a_study_attribute(store: list[dict[str, Any]]) -> None:
    assert _uids(search("series", store, {"PatientID": ["P001"]}), SERIES_UID) == [SERIES_A1, SERIES_A2, SERIES_C1]
    assert _uids(search("series", store, {"ModalitiesInStudy": ["SR"]}), SERIES_UID) == [SERIES_A1, SERIES_A2]


# ----- instances -----


def test_search_instances_within_a_series_orders_by_instance_number_then_uid() -> None:
    store = [
        _instance("1.1", "1.1.1", "1.1.1.9", InstanceNumber=1),
        _instance("1.1", "1.1.1", "1.1.1.5"),
        _instance("1.1", "1.1.1", "1.1.1.3", InstanceNumber=10),
        _instance("1.1", "1.1.1", "1.1.1.7", InstanceNumber=1),
        _instance("1.1", "1.1.1", "1.1.1.2", InstanceNumber=2),
    ]
    found = search("instances", store, {}, study_uid="1.1", series_uid="1.1.1")
    assert _uids(found, SOP_UID) == ["1.1.1.7", "1.1.1.9", "1.1.1.2", "1.1.1.3", "1.1.1.5"]


def test_search_instances_within_a_series_returns_instance_attributes(store: list[dict[str, Any]]) -> None:
    found = search("instances", store, {}, study_uid=STUDY_B, series_uid=SERIES_B1)
    assert _uids(found, SOP_UID) == ["1.2.840.9.2.1.1", "1.2.840.9.2.1.2"]
    assert set(found[0]) == {
        SOP_CLASS, SOP_UID, INSTANCE_NUMBER, ROWS, "00280011", "00280100", "00280008", STUDY_UID, SERIES_UID
    }  # fmt: skip
    assert found[0]["00280008"] == {"vr": "IS", "Value": [3]}  # NumberOfFrames
    assert found[0][ROWS] == {"vr": "US", "Value": [4]}


def test_search_instances_across_the_store_include_study_and_series_attributes(store: list[dict[str, Any]]) -> None:
    found = search("instances", store, {})
    assert len(found) == 7
    first = found[0]
    assert {PATIENT_ID, STUDY_DATE, MODALITIES_IN_STUDY, MODALITY, SERIES_NUMBER, SERIES_INSTANCE_COUNT} <= set(first)


def test_search_instances_within_a_study_include_series_but_not_study_attributes(
    store: list[dict[str, Any]],
) -> None:
    found = search("instances", store, {}, study_uid=STUDY_A)
    assert sorted(_uids(found, SOP_UID)) == ["1.2.840.9.1.1.1", "1.2.840.9.1.1.2", "1.2.840.9.1.2.1"]
    assert all(MODALITY in item and PATIENT_ID not in item for item in found)


def test_search_instances_by_a_study_level_attribute(store: list[dict[str, Any]]) -> None:
    found = search("instances", store, {"PatientID": ["P001"]})
    assert sorted(_uids(found, SOP_UID)) == ["1.2.840.9.1.1.1", "1.2.840.9.1.1.2", "1.2.840.9.1.2.1", "1.2.840.9.3.1.1"]
    assert all(item[PATIENT_ID]["Value"] == ["P001"] for item in found)
    by_name = search("instances", store, {"PatientName": ["smith^*"]})
    assert _uids(by_name, SOP_UID) == ["1.2.840.9.2.1.1", "1.2.840.9.2.1.2"]


def test_search_instances_by_modalities_in_study_finds_every_instance_of_those_studies(
    store: list[dict[str, Any]],
) -> None:
    found = search("instances", store, {"ModalitiesInStudy": ["SR"]})
    assert sorted(_uids(found, SOP_UID)) == ["1.2.840.9.1.1.1", "1.2.840.9.1.1.2", "1.2.840.9.1.2.1"]


def test_search_instances_by_sop_class_instance_number_and_sop_instance_uid_list(
    store: list[dict[str, Any]],
) -> None:
    assert _uids(search("instances", store, {"SOPClassUID": [BASIC_TEXT_SR]}), SOP_UID) == ["1.2.840.9.1.2.1"]
    by_number = search("instances", store, {"InstanceNumber": ["2"]})
    assert sorted(_uids(by_number, SOP_UID)) == ["1.2.840.9.1.1.1", "1.2.840.9.2.1.2"]
    by_list = search("instances", store, {"SOPInstanceUID": ["1.2.840.9.4.1.1,1.2.840.9.2.1.1"]})
    assert _uids(by_list, SOP_UID) == ["1.2.840.9.2.1.1", "1.2.840.9.4.1.1"]


def test_search_instances_within_a_series_of_another_study_is_empty(store: list[dict[str, Any]]) -> None:
    assert search("instances", store, {}, study_uid=STUDY_B, series_uid=SERIES_A1) == []


# ----- paging -----


def test_search_limit_and_offset_page_the_ordered_results(store: list[dict[str, Any]]) -> None:
    everything = search("instances", store, {})
    assert search("instances", store, {"limit": ["3"]}) == everything[:3]
    assert search("instances", store, {"offset": ["5"]}) == everything[5:]
    assert search("instances", store, {"limit": ["2"], "offset": ["3"]}) == everything[3:5]
    assert search("instances", store, {"offset": ["7"]}) == []
    assert search("instances", store, {"limit": ["0"]}) == []
    assert search("instances", store, {"limit": ["100"]}) == everything


def test_search_pages_after_matching(store: list[dict[str, Any]]) -> None:
    assert _studies(store, PatientID="P001", limit="1", offset="1") == [STUDY_C]


# ----- includefield -----


def test_search_includefield_adds_attributes_by_keyword_or_tag_repeated_or_comma_separated(
    store: list[dict[str, Any]],
) -> None:
    params = {"includefield": ["PatientAge, 00080070", "BodyPartExamined"], "StudyInstanceUID": [STUDY_A]}
    [study] = search("studies", store, params)
    assert study[PATIENT_AGE]["Value"] == ["054Y"]
    assert study[MANUFACTURER]["Value"] == ["ACME"]  # asked for by name: given whatever its level
    assert study["00180015"]["Value"] == ["CHEST"]
    [other] = search("studies", store, {"includefield": ["Manufacturer"], "StudyInstanceUID": [STUDY_B]})
    assert MANUFACTURER not in other  # absent attributes stay absent


def test_search_includefield_all_at_study_level_adds_the_study_attributes_of_the_first_instance(
    store: list[dict[str, Any]],
) -> None:
    [study] = search("studies", store, {"includefield": ["all"], "StudyInstanceUID": [STUDY_A]})
    assert study[PATIENT_AGE]["Value"] == ["054Y"]
    assert study["00080090"]["Value"] == [{"Alphabetic": "WHO^DOCTOR"}]
    assert not {MANUFACTURER, MODALITY, ROWS, SOP_UID, SERIES_UID} & set(study)


def test_search_includefield_all_at_series_level_adds_the_series_attributes(store: list[dict[str, Any]]) -> None:
    [series] = search("series", store, {"includefield": ["all"], "SeriesInstanceUID": [SERIES_A1]}, study_uid=STUDY_A)
    assert series[MANUFACTURER]["Value"] == ["ACME"]
    assert series["00180015"]["Value"] == ["CHEST"]
    assert not {ROWS, SOP_UID, PATIENT_AGE, PATIENT_ID} & set(series)
    [across] = search("series", store, {"includefield": ["all"], "SeriesInstanceUID": [SERIES_A1]})
    assert across[PATIENT_AGE]["Value"] == ["054Y"]


def test_search_includefield_all_at_instance_level_adds_every_attribute_but_bulk_data() -> None:
    dataset = Dataset()
    dataset.StudyInstanceUID, dataset.SeriesInstanceUID, dataset.SOPInstanceUID = "1.1", "1.1.1", "1.1.1.1"
    dataset.ImageType = ["ORIGINAL", "PRIMARY"]
    dataset.PatientAge = "001Y"
    dataset.add_new(0x00291010, "OB", b"\1" * 16)
    dataset.PixelData = b"\0" * 16
    [instance] = search("instances", [dataset_to_metadata(dataset)], {"includefield": ["all"]}, study_uid="1.1")
    assert instance["00080008"]["Value"] == ["ORIGINAL", "PRIMARY"]
    assert instance[PATIENT_AGE]["Value"] == ["001Y"]
    assert instance["00291010"]["InlineBinary"]
    assert "7FE00010" not in instance


# ----- determinism and isolation -----


def test_search_results_do_not_depend_on_the_order_of_the_instances(store: list[dict[str, Any]]) -> None:
    shuffled = list(store)
    random.Random(7).shuffle(shuffled)
    levels: list[Level] = ["studies", "series", "instances"]
    for level in levels:
        params = {"includefield": ["all"]}
        assert search(level, shuffled, params) == search(level, store, params)


def test_search_results_share_no_state_with_the_metadata(store: list[dict[str, Any]]) -> None:
    [study] = search("studies", store, {"StudyInstanceUID": [STUDY_B]})
    study[PATIENT_ID]["Value"][0] = "changed"
    assert _studies(store, PatientID="P002") == [STUDY_B]


def test_search_of_an_empty_store_is_empty() -> None:
    assert search("studies", [], {"PatientID": ["P001"]}) == []
    assert search("instances", iter([]), {}) == []


# ----- fuzzy matching -----


def test_fuzzy_matching_matches_name_word_prefixes_in_any_order() -> None:
    store = [
        _instance(STUDY_A, SERIES_A1, "1.1", PatientName="DOE^JANE^MARIE"),
        _instance(STUDY_B, "2.2", "2.3", PatientName="ROE^JOHN"),
    ]

    def names(value: str, fuzzy: bool) -> list[str]:
        params = {"PatientName": [value], "fuzzymatching": ["true"]}
        return [r["00100010"]["Value"][0]["Alphabetic"] for r in search("studies", store, params, fuzzy=fuzzy)]

    assert names("jan", fuzzy=True) == ["DOE^JANE^MARIE"]
    assert names("MARIE^doe", fuzzy=True) == ["DOE^JANE^MARIE"]
    assert names("doe jo", fuzzy=True) == []
    assert names("R*", fuzzy=True) == ["ROE^JOHN"]  # a wildcard value keeps wildcard matching
    assert names("jan", fuzzy=False) == []  # a server without fuzzy matching matches literally


def test_fuzzymatching_false_or_absent_is_literal() -> None:
    store = [_instance(STUDY_A, SERIES_A1, "1.1", PatientName="DOE^JANE")]
    assert search("studies", store, {"PatientName": ["jane"], "fuzzymatching": ["false"]}, fuzzy=True) == []
    assert search("studies", store, {"PatientName": ["jane"]}, fuzzy=True) == []
    with pytest.raises(QueryError, match="fuzzymatching must be true or false"):
        search("studies", store, {"fuzzymatching": ["yes"]}, fuzzy=True)

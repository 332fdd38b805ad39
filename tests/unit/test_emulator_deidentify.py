"""De-identification of one instance: the config parser, tag filters and UID replacement."""

from __future__ import annotations

import io
from typing import cast

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from devstack.synthetic import generate_dataset
from healthcare_emulator.deidentify import (
    DeidentifyConfigError,
    DicomDeidConfig,
    deidentify_instance,
    parse_config,
    uid_mapper,
)


def _read(data: bytes) -> Dataset:
    return pydicom.dcmread(io.BytesIO(data))


def _with_extras() -> bytes:
    """A synthetic instance plus a private tag, a description and a reference to another instance."""
    instance = generate_dataset(1, 1, 1, seed=2001)[0]
    dataset = _read(instance.data)
    dataset.add_new(0x00091010, "LO", "PRIVATE")
    dataset.InstitutionName = "SYNTH HOSPITAL"
    reference = Dataset()
    reference.ReferencedSOPClassUID = dataset.SOPClassUID
    reference.ReferencedSOPInstanceUID = dataset.SOPInstanceUID
    dataset.SourceImageSequence = Sequence([reference])
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_parse_config_defaults_to_keep_all_as_the_api_reference_says() -> None:
    assert parse_config(None) == DicomDeidConfig() == parse_config({})
    assert parse_config({"dicom": {"filterProfile": "TAG_FILTER_PROFILE_UNSPECIFIED"}}).profile == "KEEP_ALL_PROFILE"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"dicom": {"keepList": {"tags": ["PatientID"]}, "filterProfile": "KEEP_ALL_PROFILE"}}, "one of"),
        ({"dicom": {"keepList": {"tags": ["NotAKeyword"]}}}, "'NotAKeyword' is not a DICOM keyword"),
        ({"dicom": {"removeList": {"tags": ["StudyInstanceUID"]}}}, "cannot remove 0020000D"),
        ({"dicom": {"filterProfile": "SOMETHING"}}, "unknown config.dicom.filterProfile"),
        ({"dicom": {"keepList": {"tags": []}}}, "non-empty list"),
    ],
)
def test_parse_config_names_what_is_wrong(config: dict[str, object], message: str) -> None:
    with pytest.raises(DeidentifyConfigError, match=message) as error:
        parse_config(config)
    assert not error.value.unimplemented


@pytest.mark.parametrize(
    "config",
    [
        {"dicom": {"filterProfile": "DEIDENTIFY_TAG_CONTENTS"}},
        {"image": {"textRedactionMode": "REDACT_ALL_TEXT"}},
    ],
)
def test_parse_config_says_what_is_not_emulated(config: dict[str, object]) -> None:
    with pytest.raises(DeidentifyConfigError, match="not emulated") as error:
        parse_config(config)
    assert error.value.unimplemented


def test_basic_profile_empties_removes_and_replaces() -> None:
    original = _read(_with_extras())
    config = parse_config({"dicom": {"filterProfile": "ATTRIBUTE_CONFIDENTIALITY_BASIC_PROFILE"}})
    result = _read(deidentify_instance(_with_extras(), config, uid_mapper("salt")))
    # attributes to empty are present and empty; those to remove and private tags are gone
    assert result.PatientName == "" and result.PatientID == "" and result.StudyDate == ""
    assert "InstitutionName" not in result and "StudyDescription" not in result and "SeriesDescription" not in result
    assert 0x00091010 not in result
    # technical attributes and pixels are kept
    assert result.Modality == original.Modality
    assert result.PixelData == original.PixelData
    # UIDs are new; the optional (Type 3) reference sequence, X/Z/U* in Table E.1-1, is removed
    assert result.StudyInstanceUID != original.StudyInstanceUID
    assert result.SOPInstanceUID != original.SOPInstanceUID
    assert result.SOPClassUID == original.SOPClassUID  # registered UIDs are not identifiers
    assert "SourceImageSequence" not in result
    assert result.file_meta.MediaStorageSOPInstanceUID == result.SOPInstanceUID


def test_a_reference_follows_the_instance_it_refers_to() -> None:
    config = parse_config({"dicom": {"filterProfile": "KEEP_ALL_PROFILE"}})
    result = _read(deidentify_instance(_with_extras(), config, uid_mapper("salt")))
    assert result.SourceImageSequence[0].ReferencedSOPInstanceUID == result.SOPInstanceUID


def test_keep_list_keeps_the_listed_tags_and_the_technical_minimum() -> None:
    config = parse_config({"dicom": {"keepList": {"tags": ["PatientID", "00080060"]}}})
    result = _read(deidentify_instance(_with_extras(), config, uid_mapper("salt")))
    assert result.PatientID == _read(_with_extras()).PatientID
    assert "PatientName" not in result and "InstitutionName" not in result and "StudyDate" not in result
    assert {"Rows", "Columns", "PixelData", "StudyInstanceUID", "SOPClassUID"} <= set(result.dir())


def test_remove_list_removes_only_the_listed_tags() -> None:
    config = parse_config({"dicom": {"removeList": {"tags": ["PatientName", "00100020"]}}})
    result = _read(deidentify_instance(_with_extras(), config, uid_mapper("salt")))
    assert "PatientName" not in result and "PatientID" not in result
    assert result.InstitutionName == "SYNTH HOSPITAL"
    assert 0x00091010 in result


def test_minimal_keep_list_leaves_no_patient_value() -> None:
    config = parse_config({"dicom": {"filterProfile": "MINIMAL_KEEP_LIST_PROFILE"}})
    result = _read(deidentify_instance(_with_extras(), config, uid_mapper("salt")))
    # required by the CT IOD (Type 2): present and empty; not required: gone
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber", "StudyDate"):
        assert result[keyword].is_empty, keyword
    assert "InstitutionName" not in result and "StudyDescription" not in result and 0x00091010 not in result
    assert "PixelData" in result


def test_uids_map_consistently_within_a_salt_and_differ_across_salts() -> None:
    instances = generate_dataset(1, 2, 2, seed=2002)
    mapped = [_read(deidentify_instance(i.data, parse_config(None), uid_mapper("dest-a"))) for i in instances]
    # one original study -> one new study; two series -> two new series; every SOP new and distinct
    assert len({d.StudyInstanceUID for d in mapped}) == 1
    assert len({d.SeriesInstanceUID for d in mapped}) == 2
    assert len({d.SOPInstanceUID for d in mapped}) == 4
    assert all(d.StudyInstanceUID.startswith("2.25.") and len(d.StudyInstanceUID) <= 64 for d in mapped)
    assert not {d.SOPInstanceUID for d in mapped} & {i.sop_uid for i in instances}
    # the same instance and salt give the same UIDs; another salt other ones
    again = _read(deidentify_instance(instances[0].data, parse_config(None), uid_mapper("dest-a")))
    other = _read(deidentify_instance(instances[0].data, parse_config(None), uid_mapper("dest-b")))
    assert again.SOPInstanceUID == mapped[0].SOPInstanceUID
    assert other.SOPInstanceUID != mapped[0].SOPInstanceUID


def test_skip_id_redaction_keeps_every_uid() -> None:
    instance = generate_dataset(1, 1, 1, seed=2003)[0]
    config = parse_config({"dicom": {"filterProfile": "KEEP_ALL_PROFILE", "skipIdRedaction": True}})
    result = _read(deidentify_instance(instance.data, config, uid_mapper("salt")))
    assert (result.StudyInstanceUID, result.SeriesInstanceUID, result.SOPInstanceUID) == (
        instance.study_uid,
        instance.series_uid,
        instance.sop_uid,
    )
    assert result.PatientName == _read(instance.data).PatientName  # KEEP_ALL keeps the tags


def test_a_deidentify_that_stored_some_instances_succeeds_with_its_failures_counted() -> None:
    # The API: "The LRO result may still be successful if de-identification fails for some DICOM instances"; an
    # import with a failed file ends in error, a de-id that stored none too.
    from healthcare_emulator.operations import OperationContext, OperationRunner

    # the de-id job marks its context partial_success; imports and exports do not
    partial = OperationContext("op", cast(OperationRunner, None), success=3, failure=1, errors=[("/x", "bad")],
                               partial_success=True)  # fmt: skip
    outcome = OperationRunner._outcome(partial, None, "v1", "deidentify.DeidentifySummary")
    assert "response" in outcome and "error" not in outcome
    none_stored = OperationContext("op", cast(OperationRunner, None), success=0, failure=2, errors=[("/x", "bad")],
                                   partial_success=True)  # fmt: skip
    assert "error" in OperationRunner._outcome(none_stored, None, "v1", "deidentify.DeidentifySummary")
    an_import = OperationContext("op", cast(OperationRunner, None), success=3, failure=1, errors=[("/x", "bad")])
    assert "error" in OperationRunner._outcome(an_import, None, "v1", "dicom.ImportDicomDataResponse")

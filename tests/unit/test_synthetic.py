"""The synthetic DICOM generator used by tests, benchmarks and the demo."""

from __future__ import annotations

import datetime as dt
import io
import os
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest

from devstack.synthetic import (
    CT_IMAGE_STORAGE,
    EXPLICIT_VR_LITTLE_ENDIAN,
    MR_IMAGE_STORAGE,
    MULTIFRAME_GRAYSCALE_WORD_SC_IMAGE_STORAGE,
    RLE_LOSSLESS,
    SyntheticInstance,
    generate_dataset,
    main,
    make_instance,
    new_uid,
    write_tree,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
UID_PATTERN = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
UIDS: dict[str, Any] = {"study_uid": "1.2.3", "series_uid": "1.2.3.4", "sop_uid": "1.2.3.4.5"}


def _read(data: bytes) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(data))


def _valid_uid(uid: str) -> bool:
    return len(uid) <= 64 and UID_PATTERN.match(uid) is not None


def test_generate_dataset_is_deterministic_for_a_seed() -> None:
    # WHEN the same dataset is generated twice, and once with another seed
    first = generate_dataset(2, 2, 3, seed=3, multiframe_every=4, compressed_every=5)
    again = generate_dataset(2, 2, 3, seed=3, multiframe_every=4, compressed_every=5)
    other = generate_dataset(2, 2, 3, seed=4, multiframe_every=4, compressed_every=5)

    # THEN the same seed gives the same bytes, another seed other UIDs, pixels and patients
    assert [i.data for i in first] == [i.data for i in again]
    assert first == again
    assert not {i.sop_uid for i in first} & {i.sop_uid for i in other}
    assert _read(first[0].data).PixelData != _read(other[0].data).PixelData
    assert {i.patient_id for i in first}.isdisjoint({i.patient_id for i in other})


def test_generated_files_are_part10_with_the_advertised_uids() -> None:
    instances = generate_dataset(2, 2, 3, seed=1, multiframe_every=4, compressed_every=5)

    assert len(instances) == 12
    for instance in instances:
        assert instance.data[:128] == b"\x00" * 128
        assert instance.data[128:132] == b"DICM"
        dataset = _read(instance.data)
        assert (dataset.StudyInstanceUID, dataset.SeriesInstanceUID, dataset.SOPInstanceUID) == (
            instance.study_uid,
            instance.series_uid,
            instance.sop_uid,
        )
        meta = dataset.file_meta
        assert meta.MediaStorageSOPInstanceUID == instance.sop_uid
        assert meta.MediaStorageSOPClassUID == dataset.SOPClassUID
        assert meta.TransferSyntaxUID == instance.transfer_syntax
        assert _valid_uid(meta.ImplementationClassUID)
        assert (str(dataset.PatientName), dataset.PatientID, dataset.PatientBirthDate) == (
            instance.patient_name,
            instance.patient_id,
            instance.patient_birth_date,
        )


def test_files_are_laid_out_exactly_as_pydicom_itself_writes_them() -> None:
    # GIVEN a plain, an RLE and a multi-frame RLE instance (assembled from cached element encodings)
    instances = generate_dataset(1, 1, 6, seed=2, multiframe_every=3, compressed_every=2)
    for instance in (instances[0], instances[1], instances[5]):
        # WHEN pydicom decodes every element and writes the file again itself
        dataset = _read(instance.data)
        for _ in dataset.iterall():
            pass
        rewritten = io.BytesIO()
        dataset.save_as(rewritten, enforce_file_format=True)

        # THEN the bytes are identical: same order, lengths, padding, group length and encapsulation
        assert rewritten.getvalue() == instance.data


def test_uids_are_valid_unique_and_shared_only_within_their_study_and_series() -> None:
    instances = generate_dataset(3, 2, 4, seed=7)

    study_uids = {i.study_uid for i in instances}
    series_uids = {i.series_uid for i in instances}
    sop_uids = {i.sop_uid for i in instances}
    assert (len(study_uids), len(series_uids), len(sop_uids)) == (3, 6, 24)
    assert not study_uids & series_uids and not series_uids & sop_uids and not study_uids & sop_uids
    assert all(_valid_uid(uid) for uid in study_uids | series_uids | sop_uids)
    for series_uid in series_uids:
        assert len({i.study_uid for i in instances if i.series_uid == series_uid}) == 1


def test_new_uid_is_deterministic_for_the_rng_and_valid() -> None:
    uids = [new_uid(random.Random(5)) for _ in range(2)]
    many = [new_uid(rng) for rng in [random.Random(6)] for _ in range(500)]

    assert uids[0] == uids[1]
    assert uids[0].startswith("2.25.")
    assert len(set(many)) == 500
    assert all(_valid_uid(uid) for uid in many)


def test_every_nth_instance_is_multiframe_or_rle_counting_from_one_across_the_dataset() -> None:
    # GIVEN 2 x 2 x 3 = 12 instances, every 4th multi-frame and every 3rd RLE
    instances = generate_dataset(2, 2, 3, seed=11, multiframe_every=4, compressed_every=3)

    # THEN instances 4, 8, 12 have 3 frames and 3, 6, 9, 12 are RLE (12 is both)
    assert [n for n, i in enumerate(instances, 1) if i.frames == 3] == [4, 8, 12]
    assert [n for n, i in enumerate(instances, 1) if i.transfer_syntax == RLE_LOSSLESS] == [3, 6, 9, 12]
    for instance in instances:
        dataset = _read(instance.data)
        if instance.frames > 1:
            assert dataset.NumberOfFrames == 3
            assert dataset.SOPClassUID == MULTIFRAME_GRAYSCALE_WORD_SC_IMAGE_STORAGE
            assert dataset.pixel_array.shape == (3, 32, 32)
        else:
            assert instance.frames == 1
            assert "NumberOfFrames" not in dataset
            assert dataset.pixel_array.shape == (32, 32)
        if instance.transfer_syntax != RLE_LOSSLESS:
            assert instance.transfer_syntax == EXPLICIT_VR_LITTLE_ENDIAN


def test_without_every_options_all_instances_are_single_frame_explicit_vr_little_endian() -> None:
    instances = generate_dataset(2, 1, 5, seed=12)

    assert {(i.frames, i.transfer_syntax) for i in instances} == {(1, EXPLICIT_VR_LITTLE_ENDIAN)}


@pytest.mark.parametrize("frames", [1, 3])
def test_rle_instance_decodes_to_the_same_pixels_as_uncompressed(frames: int) -> None:
    # GIVEN the same instance and seed, once uncompressed and once RLE Lossless
    plain = _read(make_instance(frames=frames, seed=9, **UIDS))
    rle = _read(make_instance(frames=frames, seed=9, compressed=True, **UIDS))

    # THEN only the transfer syntax differs; the decoded pixels are identical and not blank
    assert plain.file_meta.TransferSyntaxUID == EXPLICIT_VR_LITTLE_ENDIAN
    assert rle.file_meta.TransferSyntaxUID == RLE_LOSSLESS
    assert rle.SOPInstanceUID == plain.SOPInstanceUID == UIDS["sop_uid"]
    assert np.array_equal(plain.pixel_array, rle.pixel_array)
    assert plain.pixel_array.dtype == np.uint16
    assert plain.pixel_array.min() < plain.pixel_array.max()


def test_pixels_are_12_bit_varied_and_depend_on_the_seed() -> None:
    pixels = _read(make_instance(rows=64, columns=48, seed=1, **UIDS)).pixel_array
    same = _read(make_instance(rows=64, columns=48, seed=1, **UIDS)).pixel_array
    other = _read(make_instance(rows=64, columns=48, seed=2, **UIDS)).pixel_array
    frames = _read(make_instance(frames=3, seed=1, **UIDS)).pixel_array

    assert pixels.shape == (64, 48)
    assert int(pixels.max()) <= 4095
    assert len(np.unique(pixels)) > 100  # an image, not a flat field
    assert np.array_equal(pixels, same)
    assert not np.array_equal(pixels, other)
    assert not np.array_equal(frames[0], frames[1])


@pytest.mark.parametrize(
    ("modality", "frames", "sop_class"),
    [("CT", 1, CT_IMAGE_STORAGE), ("MR", 1, MR_IMAGE_STORAGE), ("CT", 3, MULTIFRAME_GRAYSCALE_WORD_SC_IMAGE_STORAGE)],
)
def test_headers_carry_realistic_image_attributes(modality: str, frames: int, sop_class: str) -> None:
    dataset = _read(
        make_instance(modality=modality, frames=frames, rows=40, columns=30, series_number=2, instance_number=7, **UIDS)
    )

    assert dataset.SOPClassUID == dataset.file_meta.MediaStorageSOPClassUID == sop_class
    assert dataset.Modality == modality
    assert (dataset.SeriesNumber, dataset.InstanceNumber) == (2, 7)
    assert (dataset.Rows, dataset.Columns) == (40, 30)
    assert (dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit, dataset.PixelRepresentation) == (16, 12, 11, 0)
    assert (dataset.SamplesPerPixel, dataset.PhotometricInterpretation) == (1, "MONOCHROME2")
    assert dataset.StudyDate == "20240101"
    for keyword in (
        "StudyTime",
        "AccessionNumber",
        "StudyID",
        "StudyDescription",
        "SeriesDescription",
        "PatientSex",
        "WindowCenter",
        "WindowWidth",
        "RescaleSlope",
        "RescaleIntercept",
    ):
        assert str(dataset.get(keyword, "")).strip(), keyword
    assert float(dataset.RescaleSlope) == 1.0
    assert dataset.file_meta.ImplementationVersionName == "DICOMFLOW_SYN"
    if frames > 1:
        assert dataset.NumberOfFrames == frames
        assert dataset.FrameIncrementPointer == 0x00181063
    else:
        assert len(dataset.ImageOrientationPatient) == 6
        assert _valid_uid(dataset.FrameOfReferenceUID)


def test_each_patient_has_distinct_clearly_fake_identifiers_kept_out_of_paths() -> None:
    instances = generate_dataset(12, 2, 2, seed=3)
    patients = {(i.study_uid, i.patient_name, i.patient_id, i.patient_birth_date) for i in instances}

    # THEN one patient per study, all different, all recognisably synthetic
    assert len(patients) == 12
    assert len({p[1] for p in patients}) == len({p[2] for p in patients}) == len({p[3] for p in patients}) == 12
    for _, name, patient_id, birth_date in patients:
        assert re.fullmatch(r"SYNTH\^[A-Z]+\^\d{4}", name)
        assert re.fullmatch(r"SYN\d{4}-\d{4}", patient_id)
        assert dt.date(1940, 1, 1) <= dt.datetime.strptime(birth_date, "%Y%m%d").date() < dt.date(2000, 1, 1)
    # AND the folder names never carry them, so logging an object name leaks no synthetic PHI
    for instance in instances:
        for value in (instance.patient_name, instance.patient_id, instance.patient_birth_date):
            assert value not in instance.relative_path


def test_relative_paths_nest_patient_study_series_instance() -> None:
    instances = generate_dataset(2, 2, 3, seed=1)

    paths = [i.relative_path for i in instances]
    assert paths[0] == "PAT0001/STUDY01/SERIES01/IM0001.dcm"
    assert paths[-1] == "PAT0002/STUDY01/SERIES02/IM0003.dcm"
    assert len(set(paths)) == 12
    assert all(re.fullmatch(r"PAT\d{4}/STUDY\d{2}/SERIES\d{2}/IM\d{4}\.dcm", p) for p in paths)


def test_write_tree_writes_each_instance_at_its_relative_path(tmp_path: Path) -> None:
    instances = generate_dataset(1, 2, 2, seed=4)

    paths = write_tree(instances, tmp_path / "out")

    assert paths == [tmp_path / "out" / i.relative_path for i in instances]
    assert [p.read_bytes() for p in paths] == [i.data for i in instances]
    assert sorted(p for p in (tmp_path / "out").rglob("*") if p.is_file()) == sorted(paths)


def test_make_instance_extra_adds_overrides_and_removes_attributes() -> None:
    dataset = _read(
        make_instance(
            PatientSex="F",
            ImageType=["DERIVED", "SECONDARY"],
            ReferringPhysicianName=None,
            BodyPartExamined="CHEST",
            PixelData=None,
            **UIDS,
        )
    )

    assert dataset.PatientSex == "F"
    assert list(dataset.ImageType) == ["DERIVED", "SECONDARY"]
    assert dataset.BodyPartExamined == "CHEST"
    assert "ReferringPhysicianName" not in dataset
    assert "PixelData" not in dataset


@pytest.mark.parametrize(
    "extra",
    [{"NotAKeyword": "x"}, {"TransferSyntaxUID": "1.2.840.10008.1.2"}, {"PixelData": b"\x00\x00"}],
)
def test_make_instance_rejects_unknown_meta_and_pixel_overrides(extra: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(extra))):
        make_instance(**UIDS, **extra)


def test_a_value_pydicom_rejects_is_rejected_even_after_an_equal_value_was_encoded() -> None:
    # GIVEN 4095 encoded (and cached) for a US element
    assert _read(make_instance(LargestImagePixelValue=4095, **UIDS)).LargestImagePixelValue == 4095

    # WHEN the equal float 4095.0, which pydicom cannot write as US, is asked for
    # THEN pydicom's own error surfaces instead of the cached encoding of 4095
    with pytest.warns(UserWarning, match="float"), pytest.raises(OSError, match="not an integer"):
        make_instance(LargestImagePixelValue=4095.0, **UIDS)


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((1, 1, 1), {"multiframe_every": 0}),
        ((1, 1, 1), {"compressed_every": -1}),
        ((-1, 1, 1), {}),
    ],
)
def test_generate_dataset_rejects_bad_arguments(args: tuple[int, int, int], kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        generate_dataset(*args, **kwargs)


def test_make_instance_rejects_empty_images() -> None:
    with pytest.raises(ValueError, match="positive"):
        make_instance(frames=0, **UIDS)


def test_cli_writes_a_nested_tree_and_reports_the_count(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path), "--studies", "1", "--series", "2", "--instances", "2", "--compressed-every", "2"]) == 0

    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.dcm"))
    assert len(files) == 4
    assert all(f.count("/") == 3 for f in files)
    assert "wrote 4 files" in capsys.readouterr().out
    assert sum(_read((tmp_path / f).read_bytes()).file_meta.TransferSyntaxUID == RLE_LOSSLESS for f in files) == 2


def test_cli_rejects_a_zero_interval(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exited:
        main([str(tmp_path), "--multiframe-every", "0"])
    assert exited.value.code == 2
    assert not any(tmp_path.iterdir())


def test_python_m_writes_the_same_bytes_as_generate_dataset_in_another_process(tmp_path: Path) -> None:
    # GIVEN a separate interpreter with another hash seed, run as documented
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(REPO_ROOT)}
    args = ["--studies", "2", "--series", "1", "--instances", "2", "--seed", "8", "--multiframe-every", "2"]
    completed = subprocess.run(
        [sys.executable, "-m", "devstack.synthetic", str(tmp_path), *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    # THEN it reports and writes exactly the files this process generates for the same seed
    assert completed.returncode == 0, completed.stderr
    assert "wrote 4 files" in completed.stdout
    expected: list[SyntheticInstance] = generate_dataset(2, 1, 2, seed=8, multiframe_every=2)
    assert [(tmp_path / i.relative_path).read_bytes() for i in expected] == [i.data for i in expected]

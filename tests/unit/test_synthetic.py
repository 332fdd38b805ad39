"""The synthetic DICOM generator used by tests, benchmarks and the demo."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pydicom

from devstack.synthetic import generate_dataset, main, make_instance


def test_generate_dataset_is_deterministic_for_a_seed() -> None:
    assert generate_dataset(2, 2, 2, seed=3) == generate_dataset(2, 2, 2, seed=3)
    assert generate_dataset(1, 1, 1, seed=3)[0].data != generate_dataset(1, 1, 1, seed=4)[0].data


def test_generated_files_are_part10_with_the_advertised_uids() -> None:
    instances = generate_dataset(2, 2, 3, seed=1, multiframe_every=4, compressed_every=5)
    assert len({i.sop_uid for i in instances}) == 12
    for instance in instances:
        assert instance.data[128:132] == b"DICM"
        dataset = pydicom.dcmread(io.BytesIO(instance.data))
        assert (dataset.StudyInstanceUID, dataset.SeriesInstanceUID, dataset.SOPInstanceUID) == (
            instance.study_uid,
            instance.series_uid,
            instance.sop_uid,
        )
        assert dataset.file_meta.TransferSyntaxUID == instance.transfer_syntax
        assert str(dataset.PatientName) == instance.patient_name
        assert dataset.pixel_array.shape == ((instance.frames, 32, 32) if instance.frames > 1 else (32, 32))
    assert [i.frames for i in instances].count(3) == 3
    assert [i.transfer_syntax for i in instances].count("1.2.840.10008.1.2.5") == 2


def test_rle_instance_decodes_to_the_same_pixels_as_uncompressed() -> None:
    uids: dict[str, Any] = {"study_uid": "1.2", "series_uid": "1.2.3", "sop_uid": "1.2.3.4", "seed": 9}
    plain = pydicom.dcmread(io.BytesIO(make_instance(**uids)))
    rle = pydicom.dcmread(io.BytesIO(make_instance(compressed=True, **uids)))
    assert rle.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.5"
    assert rle.SOPInstanceUID == "1.2.3.4"
    assert (plain.pixel_array == rle.pixel_array).all()
    assert plain.pixel_array.min() != plain.pixel_array.max()


def test_cli_writes_a_nested_tree(tmp_path: Path, capsys: object) -> None:
    assert main([str(tmp_path), "--studies", "1", "--series", "2", "--instances", "2"]) == 0
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.dcm"))
    assert len(files) == 4
    assert all(f.count("/") == 3 for f in files)

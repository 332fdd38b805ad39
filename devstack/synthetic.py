"""Synthetic DICOM data: realistic headers, clearly fake patients, deterministic for a seed.

Tests, benchmarks and the demo use it; every value is invented (names look like ``SYNTH^ALICE^0001``),
so log checks can grep for them. ``python -m devstack.synthetic OUTDIR --studies 2 --series 2 --instances 3``
writes a tree ``PATIENT/STUDY/SERIES/IMnnnn.dcm``.
"""

from __future__ import annotations

import argparse
import random
import sys
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, RLELossless

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
MULTIFRAME_GRAYSCALE_WORD_SC = "1.2.840.10008.5.1.4.1.1.7.3"
_IMPLEMENTATION_UID = "1.2.826.0.1.3680043.10.1482.1"
_FIRST_NAMES = ("ALICE", "BORIS", "CARLA", "DMITRI", "ELENA", "FARID", "GRETA", "HUGO", "INES", "JONAS")
_MULTIFRAME_FRAMES = 3


@dataclass(frozen=True)
class SyntheticInstance:
    study_uid: str
    series_uid: str
    sop_uid: str
    relative_path: str
    data: bytes
    frames: int
    transfer_syntax: str
    patient_name: str
    patient_id: str
    patient_birth_date: str


def new_uid(rng: random.Random) -> str:
    """A valid UID under the 2.25 (UUID-derived) root, deterministic for ``rng``."""
    return f"2.25.{rng.getrandbits(122)}"


def _pixels(rows: int, columns: int, frames: int, seed: int) -> np.ndarray[Any, np.dtype[np.uint16]]:
    generator = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:columns]
    stack = []
    for frame in range(frames):
        gradient = (x * 2000 // max(columns - 1, 1) + y * 1500 // max(rows - 1, 1) + frame * 300) % 4096
        noise = generator.integers(0, 64, size=(rows, columns))
        stack.append(np.clip(gradient + noise, 0, 4095))
    array = np.asarray(stack, dtype=np.uint16)
    return array if frames > 1 else array[0]


def make_instance(
    *,
    study_uid: str,
    series_uid: str,
    sop_uid: str,
    patient_name: str = "SYNTH^ALICE^0001",
    patient_id: str = "SYN0001",
    patient_birth_date: str = "19700101",
    modality: str = "CT",
    rows: int = 32,
    columns: int = 32,
    frames: int = 1,
    compressed: bool = False,
    study_date: str = "20240101",
    series_number: int = 1,
    instance_number: int = 1,
    seed: int = 0,
    **extra: Any,
) -> bytes:
    """One complete Part-10 file (preamble, ``DICM``, file meta, dataset) with 12-bit pixel data."""
    if frames > 1:
        sop_class = MULTIFRAME_GRAYSCALE_WORD_SC
    else:
        sop_class = MR_IMAGE_STORAGE if modality == "MR" else CT_IMAGE_STORAGE
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = UID(_IMPLEMENTATION_UID)
    meta.ImplementationVersionName = "DICOMFLOW_SYN"

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = study_date
    ds.SeriesDate = study_date
    ds.StudyTime = "101500"
    ds.AccessionNumber = f"ACC{zlib.crc32(study_uid.encode()) % 10**8:08d}"
    ds.Modality = modality
    ds.Manufacturer = "DICOMFLOW SYNTHETIC"
    ds.ReferringPhysicianName = "SYNTH^REFERRER"
    ds.StudyDescription = f"Synthetic {modality} study"
    ds.SeriesDescription = f"Synthetic series {series_number}"
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = patient_birth_date
    ds.PatientSex = "O"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = series_number
    ds.InstanceNumber = instance_number
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = columns
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.WindowCenter = 2048
    ds.WindowWidth = 4096
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    if frames > 1:
        ds.NumberOfFrames = frames
    for keyword, value in extra.items():
        setattr(ds, keyword, value)
    pixels = _pixels(rows, columns, frames, seed)
    if compressed:
        ds.compress(RLELossless, pixels, encoding_plugin="pydicom", generate_instance_uid=False)
    else:
        ds.PixelData = pixels.tobytes()
        ds["PixelData"].VR = "OW"
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def generate_dataset(
    studies: int,
    series_per_study: int,
    instances_per_series: int,
    *,
    seed: int = 0,
    multiframe_every: int | None = None,
    compressed_every: int | None = None,
    rows: int = 32,
    columns: int = 32,
) -> list[SyntheticInstance]:
    """``studies`` x ``series_per_study`` x ``instances_per_series`` instances, one patient per study."""
    rng = random.Random(seed)
    result: list[SyntheticInstance] = []
    index = 0
    for study_number in range(1, studies + 1):
        study_uid = new_uid(rng)
        first = _FIRST_NAMES[rng.randrange(len(_FIRST_NAMES))]
        patient_id = f"SYN{seed % 1000:03d}{study_number:05d}"
        patient_name = f"SYNTH^{first}^{study_number:04d}"
        birth_date = f"19{rng.randrange(30, 99)}{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}"
        modality = "CT" if study_number % 2 else "MR"
        for series_number in range(1, series_per_study + 1):
            series_uid = new_uid(rng)
            for instance_number in range(1, instances_per_series + 1):
                index += 1
                sop_uid = new_uid(rng)
                multiframe = multiframe_every is not None and index % multiframe_every == 0
                compressed = compressed_every is not None and index % compressed_every == 0
                frames = _MULTIFRAME_FRAMES if multiframe else 1
                data = make_instance(
                    study_uid=study_uid,
                    series_uid=series_uid,
                    sop_uid=sop_uid,
                    patient_name=patient_name,
                    patient_id=patient_id,
                    patient_birth_date=birth_date,
                    modality=modality,
                    rows=rows,
                    columns=columns,
                    frames=frames,
                    compressed=compressed,
                    series_number=series_number,
                    instance_number=instance_number,
                    seed=seed * 1_000_003 + index,
                )
                result.append(
                    SyntheticInstance(
                        study_uid=study_uid,
                        series_uid=series_uid,
                        sop_uid=sop_uid,
                        relative_path=(
                            f"{patient_id}/STUDY{study_number:02d}/SERIES{series_number:02d}/IM{instance_number:04d}.dcm"
                        ),
                        data=data,
                        frames=frames,
                        transfer_syntax=str(RLELossless if compressed else ExplicitVRLittleEndian),
                        patient_name=patient_name,
                        patient_id=patient_id,
                        patient_birth_date=birth_date,
                    )
                )
    return result


def write_tree(instances: Iterable[SyntheticInstance], root: Path) -> list[Path]:
    """Write each instance to ``root/relative_path``; return the paths."""
    paths = []
    for instance in instances:
        path = root / instance.relative_path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(instance.data)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.synthetic", description="write synthetic DICOM files")
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--studies", type=int, default=2)
    parser.add_argument("--series", type=int, default=2)
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--multiframe-every", type=int)
    parser.add_argument("--compressed-every", type=int)
    args = parser.parse_args(argv)
    instances = generate_dataset(
        args.studies,
        args.series,
        args.instances,
        seed=args.seed,
        multiframe_every=args.multiframe_every,
        compressed_every=args.compressed_every,
    )
    paths = write_tree(instances, args.outdir)
    print(f"wrote {len(paths)} files under {args.outdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

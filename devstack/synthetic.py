"""Synthetic DICOM data: realistic headers, clearly fake patients, deterministic for a seed.

Tests, benchmarks and the demo use it; every value is invented (names look like ``SYNTH^ALICE^0001``,
patient IDs like ``SYN0007-0001``), so log checks can grep for them. Folder names in the written tree
(``PAT0001/STUDY01/SERIES02/IM0003.dcm``) carry none of those values. From the shell::

    python -m devstack.synthetic OUTDIR --studies 2 --series 2 --instances 3 [--seed N]
        [--multiframe-every N] [--compressed-every N]

Speed: pydicom encodes every element, but an element's encoding is cached by tag, VR and value, so the
many header values that repeat between instances (everything but the SOP Instance UID and the pixels,
within a series) are encoded once; a file is its cached pieces joined in tag order, which is all an
Explicit VR Little Endian Part-10 file is.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import hashlib
import random
import sys
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.pixels.encoders.base import RLELosslessEncoder

EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
RLE_LOSSLESS = "1.2.840.10008.1.2.5"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
SECONDARY_CAPTURE_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
MULTIFRAME_GRAYSCALE_WORD_SC_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.7.3"
# A UUID-derived UID (PS3.5 B.2), so no organisation root is borrowed.
IMPLEMENTATION_CLASS_UID = f"2.25.{uuid.uuid5(uuid.NAMESPACE_URL, 'https://dicomflow.invalid/synthetic').int}"
IMPLEMENTATION_VERSION_NAME = "DICOMFLOW_SYN"
MULTIFRAME_FRAMES = 3

_FIRST_NAMES = ("ALICE", "BORIS", "CARLA", "DMITRI", "ELENA", "FARID", "GRETA", "HUGO", "INES", "JONAS")
_SOP_CLASSES = {"CT": CT_IMAGE_STORAGE, "MR": MR_IMAGE_STORAGE}
_UID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://dicomflow.invalid/synthetic/uids")
_PIXEL_DATA = 0x7FE00010
_META_GROUP_LENGTH = 0x00020000
_CHARACTER_SET = "ISO_IR 100"
_BIRTH_DATE_SPAN = 60 * 365  # days from 1940-01-01; a step coprime with it keeps a dataset's dates distinct
_BIRTH_DATE_STEP = 7919
_ENCODED_CACHE_LIMIT = 20_000
_encoded_cache: dict[tuple[int, str, str], bytes] = {}

PixelArray = npt.NDArray[np.uint16]


@dataclass(frozen=True)
class SyntheticInstance:
    study_uid: str
    series_uid: str
    sop_uid: str
    relative_path: str
    """``PAT0001/STUDY01/SERIES02/IM0003.dcm``: patient / study / series / instance, no PHI values."""
    data: bytes
    """A complete Part-10 file: 128-byte preamble, ``DICM``, file meta, dataset."""
    frames: int
    transfer_syntax: str
    patient_name: str
    patient_id: str
    patient_birth_date: str


def new_uid(rng: random.Random) -> str:
    """A ``2.25.<UUID as integer>`` UID (at most 44 characters) from a version-4 UUID drawn from ``rng``."""
    return f"2.25.{uuid.UUID(int=rng.getrandbits(128), version=4).int}"


def make_instance(
    *,
    study_uid: str,
    series_uid: str,
    sop_uid: str,
    patient_name: str = "SYNTH^ALICE^0001",
    patient_id: str = "SYN0000-0001",
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
    """One complete Part-10 file with 12-bit MONOCHROME2 pixels (a noisy phantom, deterministic for ``seed``).

    SOP Class: CT or MR Image Storage for ``modality`` "CT"/"MR" (Secondary Capture for any other), and
    Multi-frame Grayscale Word Secondary Capture when ``frames > 1``. ``compressed`` selects RLE Lossless
    (pydicom's own encoder) instead of Explicit VR Little Endian.

    ``extra`` adds or overrides dataset attributes by DICOM keyword (``PatientSex="F"``); ``None`` removes
    one; ``PixelData=None`` leaves the pixels out. Lists or tuples give multiple values. File meta (group 0002)
    and the pixels are derived and cannot be overridden; text is always encoded as ISO_IR 100 (Latin-1); and
    nothing checks that overridden image attributes (``Rows``...) still match the pixels.
    """
    if rows < 1 or columns < 1 or frames < 1:
        raise ValueError(f"rows, columns and frames must be positive, got {rows}, {columns}, {frames}")
    with_pixels = "PixelData" not in extra
    if extra.pop("PixelData", None) is not None:
        raise ValueError("PixelData is generated from the seed; only PixelData=None (leave it out) is accepted")
    if frames > 1:
        sop_class = MULTIFRAME_GRAYSCALE_WORD_SC_IMAGE_STORAGE
    else:
        sop_class = _SOP_CLASSES.get(modality, SECONDARY_CAPTURE_IMAGE_STORAGE)
    transfer_syntax = RLE_LOSSLESS if compressed else EXPLICIT_VR_LITTLE_ENDIAN

    attributes = _header(
        sop_class=sop_class,
        study_uid=study_uid,
        series_uid=series_uid,
        sop_uid=sop_uid,
        patient_name=patient_name,
        patient_id=patient_id,
        patient_birth_date=patient_birth_date,
        modality=modality,
        rows=rows,
        columns=columns,
        frames=frames,
        study_date=study_date,
        series_number=series_number,
        instance_number=instance_number,
    )
    for keyword, value in extra.items():
        tag = _tag(keyword)
        if tag >> 16 == 0x0002:
            raise ValueError(f"{keyword} is file meta information, which make_instance derives")
        if value is None:
            attributes.pop(keyword, None)
        else:
            attributes[keyword] = value

    elements = {_tag(keyword): _encoded(keyword, value) for keyword, value in attributes.items()}
    if with_pixels:
        elements[_PIXEL_DATA] = _pixel_data_element(_pixels(rows, columns, frames, seed), compressed)
    meta = b"".join(
        _encoded(keyword, value)
        for keyword, value in (
            ("FileMetaInformationVersion", b"\x00\x01"),
            ("MediaStorageSOPClassUID", sop_class),
            ("MediaStorageSOPInstanceUID", sop_uid),
            ("TransferSyntaxUID", transfer_syntax),
            ("ImplementationClassUID", IMPLEMENTATION_CLASS_UID),
            ("ImplementationVersionName", IMPLEMENTATION_VERSION_NAME),
        )
    )
    group_length = _encode(DataElement(_META_GROUP_LENGTH, "UL", len(meta)))
    dataset = b"".join(elements[tag] for tag in sorted(elements))
    return b"\x00" * 128 + b"DICM" + group_length + meta + dataset


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
    """``studies`` x ``series_per_study`` x ``instances_per_series`` instances, the same bytes for the same seed.

    Each study has its own fake patient (distinct name, ID and birth date); studies alternate CT and MR,
    all dated 2024-01-01. Counting instances from 1 across the whole dataset, every ``multiframe_every``-th
    has 3 frames and every ``compressed_every``-th is RLE Lossless.
    """
    if min(studies, series_per_study, instances_per_series) < 0:
        raise ValueError("counts must not be negative")
    for name, every in (("multiframe_every", multiframe_every), ("compressed_every", compressed_every)):
        if every is not None and every < 1:
            raise ValueError(f"{name} must be at least 1, got {every}")
    rng = random.Random(seed)
    birth_offset = rng.randrange(_BIRTH_DATE_SPAN)
    result: list[SyntheticInstance] = []
    index = 0
    for study_number in range(1, studies + 1):
        study_uid = new_uid(rng)
        name_index = rng.randrange(len(_FIRST_NAMES))
        patient_name = f"SYNTH^{_FIRST_NAMES[name_index]}^{study_number:04d}"
        patient_id = f"SYN{seed % 10_000:04d}-{study_number:04d}"
        birth_day = (birth_offset + study_number * _BIRTH_DATE_STEP) % _BIRTH_DATE_SPAN
        birth_date = (dt.date(1940, 1, 1) + dt.timedelta(days=birth_day)).strftime("%Y%m%d")
        sex = "F" if name_index % 2 == 0 else "M"
        modality = "CT" if study_number % 2 else "MR"
        for series_number in range(1, series_per_study + 1):
            series_uid = new_uid(rng)
            for instance_number in range(1, instances_per_series + 1):
                index += 1
                sop_uid = new_uid(rng)
                multiframe = multiframe_every is not None and index % multiframe_every == 0
                compressed = compressed_every is not None and index % compressed_every == 0
                frames = MULTIFRAME_FRAMES if multiframe else 1
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
                    seed=rng.getrandbits(63),
                    PatientSex=sex,
                    StudyID=str(study_number),
                )
                result.append(
                    SyntheticInstance(
                        study_uid=study_uid,
                        series_uid=series_uid,
                        sop_uid=sop_uid,
                        relative_path=(
                            f"PAT{study_number:04d}/STUDY01/SERIES{series_number:02d}/IM{instance_number:04d}.dcm"
                        ),
                        data=data,
                        frames=frames,
                        transfer_syntax=RLE_LOSSLESS if compressed else EXPLICIT_VR_LITTLE_ENDIAN,
                        patient_name=patient_name,
                        patient_id=patient_id,
                        patient_birth_date=birth_date,
                    )
                )
    return result


def write_tree(instances: Iterable[SyntheticInstance], root: Path) -> list[Path]:
    """Write each instance to ``root/relative_path`` (creating folders); return the paths in order."""
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
    parser.add_argument("--studies", type=_count, default=2)
    parser.add_argument("--series", type=_count, default=2, help="series per study")
    parser.add_argument("--instances", type=_count, default=3, help="instances per series")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--multiframe-every", type=_positive, metavar="N", help="every Nth instance has 3 frames")
    parser.add_argument("--compressed-every", type=_positive, metavar="N", help="every Nth instance is RLE")
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


def _header(
    *,
    sop_class: str,
    study_uid: str,
    series_uid: str,
    sop_uid: str,
    patient_name: str,
    patient_id: str,
    patient_birth_date: str,
    modality: str,
    rows: int,
    columns: int,
    frames: int,
    study_date: str,
    series_number: int,
    instance_number: int,
) -> dict[str, Any]:
    """Every attribute except Pixel Data, by keyword (the order does not matter: files are written by tag)."""
    secondary_capture = sop_class in (SECONDARY_CAPTURE_IMAGE_STORAGE, MULTIFRAME_GRAYSCALE_WORD_SC_IMAGE_STORAGE)
    intercept = -1024 if modality == "CT" else 0
    image_type_3 = "AXIAL" if modality == "CT" else "OTHER"
    attributes: dict[str, Any] = {
        "SpecificCharacterSet": _CHARACTER_SET,
        "ImageType": ("DERIVED", "SECONDARY") if secondary_capture else ("ORIGINAL", "PRIMARY", image_type_3),
        "SOPClassUID": sop_class,
        "SOPInstanceUID": sop_uid,
        "StudyDate": study_date,
        "SeriesDate": study_date,
        "ContentDate": study_date,
        "StudyTime": "101500",
        "SeriesTime": f"1015{series_number % 60:02d}",
        "ContentTime": "101500",
        "AccessionNumber": f"ACC{_digest(study_uid) % 10**12:012d}",
        "Modality": modality,
        "Manufacturer": "DICOMFLOW SYNTHETIC",
        "ReferringPhysicianName": "SYNTH^REFERRER",
        "StudyDescription": f"Synthetic {modality} study",
        "SeriesDescription": f"Synthetic {modality} series {series_number}",
        "ManufacturerModelName": "devstack.synthetic",
        "PatientName": patient_name,
        "PatientID": patient_id,
        "PatientBirthDate": patient_birth_date,
        "PatientSex": "O",
        "StudyInstanceUID": study_uid,
        "SeriesInstanceUID": series_uid,
        "StudyID": "1",
        "SeriesNumber": series_number,
        "InstanceNumber": instance_number,
        "SamplesPerPixel": 1,
        "PhotometricInterpretation": "MONOCHROME2",
        "Rows": rows,
        "Columns": columns,
        "BitsAllocated": 16,
        "BitsStored": 12,
        "HighBit": 11,
        "PixelRepresentation": 0,
        "WindowCenter": str(intercept + 2048),
        "WindowWidth": "4096",
        "RescaleIntercept": str(intercept),
        "RescaleSlope": "1",
        "RescaleType": "HU" if modality == "CT" else "US",
    }
    if secondary_capture:
        attributes |= {"ConversionType": "WSD", "BurnedInAnnotation": "NO", "PresentationLUTShape": "IDENTITY"}
    else:
        # Image Plane and Frame of Reference, so a series stacks into a volume (0.5 mm pixels, 1 mm slices)
        attributes |= {
            "SliceThickness": "1",
            "ImagePositionPatient": (f"{-columns / 4:g}", f"{-rows / 4:g}", str(instance_number)),
            "ImageOrientationPatient": ("1", "0", "0", "0", "1", "0"),
            "FrameOfReferenceUID": f"2.25.{uuid.uuid5(_UID_NAMESPACE, study_uid).int}",
            "PositionReferenceIndicator": "",
            "SliceLocation": str(instance_number),
            "PixelSpacing": ("0.5", "0.5"),
        }
    if modality == "CT" and not secondary_capture:
        attributes |= {"KVP": "120", "ConvolutionKernel": "STANDARD"}
    if modality == "MR" and not secondary_capture:
        attributes |= {
            "ScanningSequence": "SE",
            "SequenceVariant": "NONE",
            "MRAcquisitionType": "2D",
            "RepetitionTime": "500",
            "EchoTime": "15",
            "MagneticFieldStrength": "1.5",
        }
    if frames > 1:
        attributes |= {
            "NumberOfFrames": frames,
            "FrameIncrementPointer": 0x00181063,  # Frame Time
            "FrameTime": "100",
        }
    return attributes


def _pixels(rows: int, columns: int, frames: int, seed: int) -> PixelArray:
    """A bright ellipse with a gradient on a dark background, plus noise: 12-bit values, never constant."""
    generator = np.random.default_rng(seed % 2**64)
    y = np.linspace(-1.0, 1.0, rows).reshape(rows, 1)
    x = np.linspace(-1.0, 1.0, columns).reshape(1, columns)
    body = (x / 0.9) ** 2 + (y / 0.75) ** 2 <= 1.0
    shift = int(generator.integers(0, 400))
    frame_offsets = np.arange(frames).reshape(frames, 1, 1) * 150
    image = np.where(body, 900 + shift + 1400 * (x + 1) / 2 + 700 * (y + 1) / 2, 40.0)
    noise = generator.integers(0, 64, size=(frames, rows, columns))
    stack: PixelArray = np.clip(image + frame_offsets + noise, 0, 4095).astype(np.uint16)
    return stack if frames > 1 else stack[0]


def _pixel_data_element(pixels: PixelArray, compressed: bool) -> bytes:
    if not compressed:
        return _encode(DataElement(_PIXEL_DATA, "OW", pixels.astype("<u2").tobytes()))
    frames = pixels.shape[0] if pixels.ndim == 3 else 1
    options = {
        "rows": pixels.shape[-2],
        "columns": pixels.shape[-1],
        "number_of_frames": frames,
        "samples_per_pixel": 1,
        "bits_allocated": 16,
        "bits_stored": 12,
        "pixel_representation": 0,
        "photometric_interpretation": "MONOCHROME2",
    }
    fragments = list(RLELosslessEncoder.iter_encode(pixels, encoding_plugin="pydicom", **options))
    return _encode(DataElement(_PIXEL_DATA, "OB", encapsulate(fragments), is_undefined_length=True))


def _encoded(keyword: str, value: Any) -> bytes:
    """The element's Explicit VR Little Endian bytes, from the cache when this value was encoded before."""
    tag = _tag(keyword)
    vr = _vr(tag)
    if not _cacheable(value):
        return _encode(DataElement(tag, vr, value))
    # repr, not the value: 1 == 1.0, yet pydicom treats them differently (a US element rejects 1.0)
    key = (tag, vr, repr(value))
    encoded = _encoded_cache.get(key)
    if encoded is None:
        if len(_encoded_cache) >= _ENCODED_CACHE_LIMIT:
            _encoded_cache.clear()
        # Multiple values are kept as tuples (hashable, immutable); pydicom wants a list
        element = DataElement(tag, vr, list(value) if isinstance(value, tuple) else value)
        encoded = _encoded_cache[key] = _encode(element)
    return encoded


def _encode(element: DataElement) -> bytes:
    buffer = DicomBytesIO()
    buffer.is_little_endian = True
    buffer.is_implicit_VR = False
    write_data_element(buffer, element, [_CHARACTER_SET])
    return buffer.getvalue()


def _cacheable(value: Any) -> bool:
    """Small plain values only: caching a pixel-sized bytes value would just hold memory."""
    if isinstance(value, tuple):
        return all(isinstance(item, str | int | float) for item in value)
    if isinstance(value, str | bytes):
        return len(value) <= 256
    return isinstance(value, int | float)


@functools.cache
def _tag(keyword: str) -> int:
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise ValueError(f"{keyword!r} is not a DICOM keyword")
    return tag


@functools.cache
def _vr(tag: int) -> str:
    vr = dictionary_VR(tag)
    # Ambiguous VRs ("US or SS", "OB or OW"): the first fits unsigned pixels
    return vr.split(" or ")[0]


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {value}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


if __name__ == "__main__":
    sys.exit(main())


def without_sop_class(data: bytes) -> bytes:
    """``data`` without its SOP Class UID: a header intake accepts (it needs the three instance UIDs), a file
    the store refuses ("missing SOPClassUID")."""
    import io  # noqa: PLC0415 - only the refusal cases need pydicom's reader and writer

    import pydicom  # noqa: PLC0415

    dataset = pydicom.dcmread(io.BytesIO(data))
    del dataset.SOPClassUID
    out = io.BytesIO()
    dataset.save_as(out, enforce_file_format=False)
    return out.getvalue()


def deflated_cut_short(data: bytes) -> bytes:
    """``data`` re-encoded as Deflated Explicit VR Little Endian with its deflate stream cut a third short: the
    header still inflates (intake reads the UIDs), the data set does not ("unreadable data set")."""
    import io  # noqa: PLC0415

    import pydicom  # noqa: PLC0415
    from pydicom.uid import DeflatedExplicitVRLittleEndian  # noqa: PLC0415

    dataset = pydicom.dcmread(io.BytesIO(data))
    dataset.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    out = io.BytesIO()
    dataset.save_as(out, enforce_file_format=True)
    deflated = out.getvalue()
    return deflated[: len(deflated) - len(deflated) // 3]

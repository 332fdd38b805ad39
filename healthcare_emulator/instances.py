"""Validate a DICOM Part-10 file before it enters a store and pull out what the index needs."""

from __future__ import annotations

import hashlib
import re
import zlib
from dataclasses import dataclass
from io import BytesIO
from typing import Any

import pydicom
from pydicom.errors import InvalidDicomError

from healthcare_emulator.qido import dataset_to_metadata

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_PREAMBLE_LENGTH = 128


class InvalidInstanceError(ValueError):
    """The bytes are not a storable DICOM instance; the message says why (never a tag value)."""


@dataclass(frozen=True)
class ParsedInstance:
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    transfer_syntax: str
    sha256: str
    metadata: dict[str, Any]


def parse_instance(data: bytes) -> ParsedInstance:
    """Parse a Part-10 file; raise InvalidInstanceError for anything the store would reject."""
    if len(data) == 0:
        raise InvalidInstanceError("empty file")
    if len(data) < _PREAMBLE_LENGTH + 4 or data[_PREAMBLE_LENGTH : _PREAMBLE_LENGTH + 4] != b"DICM":
        raise InvalidInstanceError("not a DICOM Part 10 file: no 'DICM' prefix after the 128-byte preamble")
    try:
        stream = BytesIO(data)
        dataset = pydicom.dcmread(stream, stop_before_pixels=True)
        metadata = dataset_to_metadata(dataset, _pixel_data_vr(dataset, data, stream.tell()))
    except zlib.error as exc:  # one file's corrupt deflate stream fails that file, not the whole import
        raise InvalidInstanceError("cannot parse DICOM file: its deflated data set does not inflate") from exc
    except (InvalidDicomError, EOFError, ValueError, KeyError, TypeError, OverflowError) as exc:
        raise InvalidInstanceError(f"cannot parse DICOM file: {type(exc).__name__}") from exc
    uids = {
        "StudyInstanceUID": _uid(dataset, "StudyInstanceUID"),
        "SeriesInstanceUID": _uid(dataset, "SeriesInstanceUID"),
        "SOPInstanceUID": _uid(dataset, "SOPInstanceUID"),
        "SOPClassUID": _uid(dataset, "SOPClassUID"),
    }
    transfer_syntax = str(getattr(dataset.file_meta, "TransferSyntaxUID", "") or "")
    if not transfer_syntax:
        raise InvalidInstanceError("file meta information has no TransferSyntaxUID")
    return ParsedInstance(
        study_uid=uids["StudyInstanceUID"],
        series_uid=uids["SeriesInstanceUID"],
        sop_uid=uids["SOPInstanceUID"],
        sop_class_uid=uids["SOPClassUID"],
        transfer_syntax=transfer_syntax,
        sha256=hashlib.sha256(data).hexdigest(),
        metadata=metadata,
    )


_PIXEL_DATA_LE, _PIXEL_DATA_BE = b"\xe0\x7f\x10\x00", b"\x7f\xe0\x00\x10"


def _pixel_data_vr(dataset: pydicom.Dataset, data: bytes, position: int) -> str | None:
    """The VR of the pixel data the header read stopped at (None when the file has none)."""
    if data[position : position + 4] not in (_PIXEL_DATA_LE, _PIXEL_DATA_BE):
        return None
    explicit_vr = data[position + 4 : position + 6]
    if explicit_vr in (b"OB", b"OW"):
        return explicit_vr.decode("ascii")
    return "OW" if int(getattr(dataset, "BitsAllocated", 8) or 8) > 8 else "OB"


def _uid(dataset: pydicom.Dataset, keyword: str) -> str:
    value = str(getattr(dataset, keyword, "") or "").strip().rstrip("\x00")
    if not value:
        raise InvalidInstanceError(f"missing {keyword}")
    if len(value) > 64 or not _UID.match(value):
        raise InvalidInstanceError(f"{keyword} is not a valid UID")
    return value

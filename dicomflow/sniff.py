"""Read just enough of an object to know it is DICOM and which instance it holds.

Starts with one ranged read (64 KiB by default) and grows it only while the header is longer; pixel data
is never needed, so a 2 GB multi-frame file costs no more than its header.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from io import BytesIO

import pydicom

from dicomflow.errors import NotDicomError

RangeReader = Callable[[int, int], bytes]
"""``read(start, end)`` returns bytes ``start`` to ``end - 1`` of the object (fewer at its end)."""

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_PREAMBLE = 128


@dataclass(frozen=True)
class HeaderInfo:
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    transfer_syntax: str
    modality: str | None
    bytes_read: int


def sniff_header(read: RangeReader, size: int | None, *, first_read: int, max_bytes: int) -> HeaderInfo:
    """The instance's identity from its header; NotDicomError (with the reason) for anything not storable."""
    if size == 0:
        raise NotDicomError("empty object")
    length = first_read
    data = b""
    while True:
        wanted = length if size is None else min(length, size)
        chunk = read(len(data), wanted)
        data += chunk
        complete = len(data) < wanted or (size is not None and len(data) >= size)
        if not data:
            raise NotDicomError("empty object")
        if len(data) < _PREAMBLE + 4 or data[_PREAMBLE : _PREAMBLE + 4] != b"DICM":
            raise NotDicomError("not a DICOM Part 10 file: no 'DICM' prefix after the 128-byte preamble")
        info, problem = _parse(data)
        if info is not None:
            return info
        if complete:
            raise NotDicomError(problem)
        if length >= max_bytes:
            raise NotDicomError(f"no complete DICOM header within the first {max_bytes} bytes: {problem}")
        length = min(length * 4, max_bytes)


def _parse(data: bytes) -> tuple[HeaderInfo | None, str]:
    """(info, "") when the identity is readable, else (None, why not)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dataset = pydicom.dcmread(BytesIO(data), stop_before_pixels=True)
            values = {
                keyword: str(getattr(dataset, keyword, "") or "").strip().rstrip("\x00")
                for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "Modality")
            }
            transfer_syntax = str(getattr(dataset.file_meta, "TransferSyntaxUID", "") or "")
    except Exception as exc:  # pydicom raises many types on truncated or corrupt input
        return None, f"cannot parse the DICOM header ({type(exc).__name__})"
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        if not values[keyword]:
            return None, f"missing {keyword}"
        if len(values[keyword]) > 64 or not _UID.match(values[keyword]):
            return None, f"{keyword} is not a valid UID"
    if not transfer_syntax:
        return None, "file meta information has no TransferSyntaxUID"
    return (
        HeaderInfo(
            study_uid=values["StudyInstanceUID"],
            series_uid=values["SeriesInstanceUID"],
            sop_uid=values["SOPInstanceUID"],
            sop_class_uid=values["SOPClassUID"],
            transfer_syntax=transfer_syntax,
            modality=values["Modality"] or None,
            bytes_read=len(data),
        ),
        "",
    )

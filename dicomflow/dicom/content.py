"""Whether two DICOM Part-10 files hold the same instance content: their data sets after the file meta
information (group 0002, which a store may rewrite: implementation class and version, source AE title) are
byte for byte equal."""

from __future__ import annotations

import hashlib
import struct

_PREAMBLE = 132  # 128-byte preamble + b"DICM"
_GROUP_LENGTH_TAG = b"\x02\x00\x00\x00"  # (0002,0000) FileMetaInformationGroupLength, explicit VR little endian


def data_set_digest(data: bytes) -> str:
    """SHA-256 of the data set after the file meta information (of the whole file when it has none)."""
    return hashlib.sha256(data[_data_set_offset(data) :]).hexdigest()


def same_content(a: bytes, b: bytes) -> bool:
    return data_set_digest(a) == data_set_digest(b)


def _data_set_offset(data: bytes) -> int:
    if data[128:132] != b"DICM" or data[_PREAMBLE : _PREAMBLE + 4] != _GROUP_LENGTH_TAG:
        return 0
    # (0002,0000) UL: tag (4) + VR "UL" (2) + length 4 (2) + value (4) -> the group's length follows it
    if data[_PREAMBLE + 4 : _PREAMBLE + 6] != b"UL" or len(data) < _PREAMBLE + 12:
        return 0
    (group_length,) = struct.unpack_from("<I", data, _PREAMBLE + 8)
    end = _PREAMBLE + 12 + group_length
    return end if end <= len(data) else 0

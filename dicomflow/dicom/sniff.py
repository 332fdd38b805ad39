"""Read just enough of an object to know it is DICOM and which instance it holds.

Starts with one ranged read (64 KiB by default) and grows it only while the header is longer; pixel data
is never needed, so a 2 GB multi-frame file costs no more than its header.

The header is walked element by element (tag, VR, length) up to the last UID needed, so a reason names what
could not be parsed (offset and group), never a value: ``DICM`` followed by garbage is "unreadable DICOM", not
"missing StudyInstanceUID". A DICOMDIR (Media Storage Directory) is recognised from its file meta information.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from dicomflow.errors import NotDicomError

RangeReader = Callable[[int, int], bytes]
"""``read(start, end)`` returns bytes ``start`` to ``end - 1`` of the object (fewer at its end)."""

MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
_PREAMBLE = 128
_META_START = _PREAMBLE + 4
_UNDEFINED = 0xFFFFFFFF
_MAX_NESTING = 32
_VRS = frozenset(
    b"AE AS AT CS DA DS DT FL FD IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR US UT UV".split()
)
_LONG_VRS = frozenset(b"OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())
_MEDIA_SOP_CLASS, _TRANSFER_SYNTAX = 0x00020002, 0x00020010
_WANTED = {
    0x00080016: "SOPClassUID",
    0x00080018: "SOPInstanceUID",
    0x00080060: "Modality",
    0x0020000D: "StudyInstanceUID",
    0x0020000E: "SeriesInstanceUID",
}
_LAST_WANTED = max(_WANTED)
_NEEDED = frozenset((0x00080018, 0x0020000D, 0x0020000E))
_PIXEL_DATA = 0x7FE00010
_IMPLICIT_LE, _EXPLICIT_BE, _DEFLATED = "1.2.840.10008.1.2", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_UID_CHARS = frozenset("0123456789.")


@dataclass(frozen=True)
class HeaderInfo:
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    transfer_syntax: str
    modality: str | None
    bytes_read: int


@dataclass(frozen=True)
class MediaDirectory:
    """A DICOMDIR (Media Storage Directory): the index of a media file-set, not an instance to import."""

    bytes_read: int


def sniff_header(
    read: RangeReader, size: int | None, *, first_read: int, max_bytes: int
) -> HeaderInfo | MediaDirectory:
    """The instance's identity from its header (or MediaDirectory for a DICOMDIR); NotDicomError (with the
    reason) for anything not storable."""
    if size == 0:
        raise NotDicomError("empty object")
    length = first_read
    data = b""
    while True:
        wanted = length if size is None else min(length, size)
        data += read(len(data), wanted)
        complete = len(data) < wanted or (size is not None and len(data) >= size)
        if not data:
            raise NotDicomError("empty object")
        if len(data) < _META_START or data[_PREAMBLE:_META_START] != b"DICM":
            raise NotDicomError("not a DICOM Part 10 file: no 'DICM' prefix after the 128-byte preamble")
        try:
            return _parse(data, complete, size, max_bytes)
        except _IncompleteError as incomplete:
            if complete:
                raise NotDicomError(f"unreadable DICOM: the object ends inside {incomplete}") from None
            if length >= max_bytes:
                raise NotDicomError(
                    f"no complete DICOM header within the first {max_bytes} bytes: it continues past {incomplete}"
                ) from None
        length = min(length * 4, max_bytes)


class _IncompleteError(Exception):
    """The bytes read so far end inside the header (more bytes may complete it)."""


class _BadVRError(NotDicomError):
    """An explicit-VR element whose two VR bytes are not a value representation."""

    def __init__(self, message: str, pos: int) -> None:
        super().__init__(message)
        self.pos = pos


@dataclass(frozen=True)
class _Syntax:
    explicit: bool
    little: bool
    base: int = 0  # offset of the walked bytes within the object
    inflated: bool = False  # offsets are within the inflated data set of a deflated transfer syntax
    capped: bool = False  # the inflated data set stops at MAX_HEADER_BYTES: the rest was never inflated

    def offset(self, pos: int) -> str:
        return f"inflated data set offset {pos}" if self.inflated else f"offset {self.base + pos}"

    def where(self, pos: int, group: int) -> str:
        return f"the data element at {self.offset(pos)} (group {group:04X})"

    def unreadable(self, pos: int, group: int, what: str) -> NotDicomError:
        return NotDicomError(f"unreadable DICOM: {self.where(pos, group)} {what}")


def _element(data: bytes, pos: int, syntax: _Syntax) -> tuple[int, bytes | None, int, int]:
    """(tag, VR or None, value length, value offset) of the element at ``pos``."""
    if pos + 8 > len(data):
        raise _IncompleteError(syntax.where(pos, 0 if pos + 2 > len(data) else _group(data, pos, syntax)))
    group, number = struct.unpack_from("<HH" if syntax.little else ">HH", data, pos)
    tag = group << 16 | number
    length_format = "<I" if syntax.little else ">I"
    if group == 0xFFFE or not syntax.explicit:
        return tag, None, struct.unpack_from(length_format, data, pos + 4)[0], pos + 8
    vr = data[pos + 4 : pos + 6]
    if vr not in _VRS:
        raise _BadVRError(f"unreadable DICOM: {syntax.where(pos, group)} has no valid value representation", pos)
    if vr in _LONG_VRS:
        if pos + 12 > len(data):
            raise _IncompleteError(syntax.where(pos, group))
        return tag, vr, struct.unpack_from(length_format, data, pos + 8)[0], pos + 12
    return tag, vr, struct.unpack_from("<H" if syntax.little else ">H", data, pos + 6)[0], pos + 8


def _group(data: bytes, pos: int, syntax: _Syntax) -> int:
    return int(struct.unpack_from("<H" if syntax.little else ">H", data, pos)[0])


def _skip_value(
    data: bytes, pos: int, vr: bytes | None, length: int, value: int, syntax: _Syntax, size: int | None, depth: int = 0
) -> int:
    """The offset after the element at ``pos`` whose value starts at ``value``."""
    group = _group(data, pos, syntax)
    if length != _UNDEFINED:
        if size is not None and not syntax.inflated and syntax.base + value + length > size:
            raise syntax.unreadable(pos, group, f"is longer than the object ({size} bytes)")
        if value + length > len(data):
            raise _IncompleteError(syntax.where(pos, group))
        return value + length
    if vr not in (None, b"SQ", b"UN", b"OB"):
        raise syntax.unreadable(pos, group, "has an undefined length its value representation does not allow")
    if depth >= _MAX_NESTING:
        raise syntax.unreadable(pos, group, f"nests sequences more than {_MAX_NESTING} deep")
    inner = _Syntax(syntax.explicit and vr != b"UN", syntax.little, syntax.base, syntax.inflated)
    return _skip_sequence(data, value, inner, size, depth + 1)


def _skip_sequence(data: bytes, pos: int, syntax: _Syntax, size: int | None, depth: int) -> int:
    """Skip items up to and including the sequence delimiter."""
    while True:
        tag, _, length, value = _element(data, pos, syntax)
        if tag == _SEQUENCE_END:
            return value
        if tag != _ITEM:
            raise syntax.unreadable(pos, tag >> 16, "is not an item of the sequence it is in")
        if length != _UNDEFINED:
            pos = _skip_value(data, pos, None, length, value, syntax, size, depth)
            continue
        pos = value
        while True:
            tag, vr, length, value = _element(data, pos, syntax)
            if tag == _ITEM_END:
                pos = value
                break
            pos = _skip_value(data, pos, vr, length, value, syntax, size, depth)


def _walk(data: bytes, syntax: _Syntax, *, complete: bool, size: int | None) -> dict[int, bytes]:
    """Values of the wanted elements of the data set.

    Stops after the last wanted element once the instance UIDs are found; tolerates what readers tolerate
    (a repeated or out-of-order element) when the UIDs are readable. When a UID is missing, walks on to the
    pixel data so that a broken structure is reported as unreadable rather than as a missing UID.
    """
    values: dict[int, bytes] = {}
    previous, pos = -1, 0
    disorder: NotDicomError | None = None
    while pos < len(data):
        try:
            tag, vr, length, value = _element(data, pos, syntax)
            if tag > _LAST_WANTED and (values.keys() >= _NEEDED or tag == _PIXEL_DATA):
                return values
            if tag < previous and disorder is None:
                disorder = syntax.unreadable(pos, tag >> 16, f"is out of order (after group {previous >> 16:04X})")
            end = _skip_value(data, pos, vr, length, value, syntax, size)
        except (NotDicomError, _IncompleteError):
            if values.keys() >= _NEEDED:
                return values
            if disorder is not None:
                raise disorder from None
            raise
        if tag in _NEEDED and tag in values and _text(data[value:end]) != _text(values[tag]):
            # readers disagree on which one counts (pydicom keeps the last): the instance is not known
            raise syntax.unreadable(pos, tag >> 16, f"repeats {_WANTED[tag]} with a different value")
        if tag in _WANTED and tag not in values and tag > previous:
            values[tag] = data[value:end]
        previous, pos = max(previous, tag), end
    if not complete and not values.keys() >= _NEEDED:
        raise _IncompleteError(f"the data set at {syntax.offset(pos)}")
    if disorder is not None and not values.keys() >= _NEEDED:
        raise disorder
    return values


def _text(raw: bytes | None) -> str:
    return (raw or b"").decode("ascii", errors="replace").strip(" \0")


def _parse(data: bytes, complete: bool, size: int | None, max_bytes: int) -> HeaderInfo | MediaDirectory:
    """Walk the file meta information, then the data set up to SeriesInstanceUID (a deflated data set is
    inflated to at most ``max_bytes``)."""
    meta_syntax = _Syntax(explicit=True, little=True)
    if len(data) >= _META_START + 2 and _group(data, _META_START, meta_syntax) != 0x0002:
        raise NotDicomError(f"unreadable DICOM: no file meta information (group 0002) at offset {_META_START}")
    meta, start = _meta(data, meta_syntax, size)
    if _text(meta.get(_MEDIA_SOP_CLASS)) == MEDIA_STORAGE_DIRECTORY:
        return MediaDirectory(bytes_read=len(data))
    transfer_syntax = _text(meta.get(_TRANSFER_SYNTAX))
    if not transfer_syntax:
        raise NotDicomError("file meta information has no TransferSyntaxUID")
    body, syntax = _data_set(data, start, transfer_syntax, max_bytes)
    try:
        values = _walk(body, syntax, complete=complete and not syntax.capped, size=size)
    except _IncompleteError:
        if syntax.capped:  # more input cannot help: the header does not end within the cap
            raise NotDicomError(
                f"not DICOM or header too large: the deflated data set inflates past {max_bytes} bytes "
                "(MAX_HEADER_BYTES) before its header ends"
            ) from None
        raise
    except _BadVRError as exc:
        if exc.pos != 0 or syntax.inflated or not syntax.little:
            raise
        # the meta says explicit VR but the data set is implicit (a writer bug that readers tolerate)
        values = _walk(body, _Syntax(explicit=False, little=True, base=start), complete=complete, size=size)
    found = {keyword: _text(values.get(tag)) for tag, keyword in _WANTED.items()}
    if found["SOPClassUID"] == MEDIA_STORAGE_DIRECTORY:
        return MediaDirectory(bytes_read=len(data))
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        uid = found[keyword]
        if not uid:
            raise NotDicomError(f"missing {keyword}")
        if len(uid) > 64 or not set(uid) <= _UID_CHARS or ".." in uid or uid[0] == "." or uid[-1] == ".":
            raise NotDicomError(f"{keyword} is not a valid UID")
    return HeaderInfo(
        study_uid=found["StudyInstanceUID"],
        series_uid=found["SeriesInstanceUID"],
        sop_uid=found["SOPInstanceUID"],
        sop_class_uid=found["SOPClassUID"],
        transfer_syntax=transfer_syntax,
        modality=found["Modality"] or None,
        bytes_read=len(data),
    )


def _meta(data: bytes, syntax: _Syntax, size: int | None) -> tuple[dict[int, bytes], int]:
    """The file meta elements (group 0002, explicit VR little endian) and the offset where the data set starts."""
    pos = _META_START
    values: dict[int, bytes] = {}
    previous = -1
    while True:
        if pos + 2 <= len(data) and _group(data, pos, syntax) != 0x0002:
            return values, pos
        tag, vr, length, value = _element(data, pos, syntax)
        if tag <= previous:
            raise syntax.unreadable(pos, tag >> 16, f"is out of order (after group {previous >> 16:04X})")
        previous = tag
        end = _skip_value(data, pos, vr, length, value, syntax, size)
        if tag in (_MEDIA_SOP_CLASS, _TRANSFER_SYNTAX):
            values[tag] = data[value:end]
        pos = end


def _data_set(data: bytes, start: int, transfer_syntax: str, max_bytes: int) -> tuple[bytes, _Syntax]:
    """The data set's bytes and how they are encoded; a deflated one inflated to at most ``max_bytes`` (a
    deflate bomb costs no more memory than the largest header)."""
    if transfer_syntax == _IMPLICIT_LE:
        return data[start:], _Syntax(explicit=False, little=True, base=start)
    if transfer_syntax == _EXPLICIT_BE:
        return data[start:], _Syntax(explicit=True, little=False, base=start)
    if transfer_syntax == _DEFLATED:
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        try:
            inflated = inflater.decompress(memoryview(data)[start:], max_bytes)
        except zlib.error:
            message = f"unreadable DICOM: the deflated data set at offset {start} cannot be inflated"
            raise NotDicomError(message) from None
        capped = bool(inflater.unconsumed_tail)
        return inflated, _Syntax(explicit=True, little=True, inflated=True, capped=capped)
    return data[start:], _Syntax(explicit=True, little=True, base=start)

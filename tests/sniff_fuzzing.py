"""Differential fuzzing of the header sniffer against pydicom: real files in every encoding intake meets,
mutated the way broken and hostile uploads are (truncations at element boundaries, wrong, undefined and huge
lengths, flipped and inserted bytes, a missing meta group), then read by both.

The rule each case must keep (``check``): the sniffer either refuses the file with a reason (intake reports
it on dicom-failed) or names the instance pydicom reads, with the same three UIDs (or recognises the
DICOMDIR pydicom recognises); it never raises anything else and never reads past ``MAX_BYTES``. Shared by
the unit test (fixed seed, a few thousand cases) and ``python -m bench.sniff_fuzz`` (a long run).
"""

from __future__ import annotations

import io
import struct
import tempfile
import traceback
import zlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pydicom
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.filereader import _read_file_meta_info, read_dataset, read_partial, read_preamble
from pydicom.filewriter import dcmwrite
from pydicom.sequence import Sequence
from pydicom.uid import UID

from devstack.fileset import write_file_set
from devstack.synthetic import generate_dataset, make_instance
from dicomflow.dicom.sniff import MEDIA_STORAGE_DIRECTORY, HeaderInfo, MediaDirectory, sniff_header
from dicomflow.errors import NotDicomError

MAX_BYTES = 1 << 16
_LAST_UID_TAG = 0x0020000E  # the sniffer reads up to the Series Instance UID: so does the oracle
_SYNTAXES = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99")
_LENGTHS = (0, 1, 3, 0xFFFF, 0xFFFFFFFF, 0x7FFFFFFF, 0x80000000)  # 2 GB declared, undefined, odd, zero


@dataclass(frozen=True)
class Verdict:
    kind: str  # "instance", "dicomdir", "refused"; the oracle's "undecided" when pydicom itself broke
    uids: tuple[str, str, str] | None = None
    reason: str = ""


def _encoded(dataset: Dataset, syntax: str) -> bytes:
    dataset.file_meta.TransferSyntaxUID = UID(syntax)
    buffer = io.BytesIO()
    dcmwrite(buffer, dataset, enforce_file_format=True)
    return buffer.getvalue()


@cache
def corpus() -> tuple[bytes, ...]:
    """Real files written by pydicom: each syntax, one with nested sequences before the UIDs, a DICOMDIR."""
    base = pydicom.dcmread(io.BytesIO(make_instance(study_uid="1.2.3", series_uid="1.2.3.4", sop_uid="1.2.3.4.5")))
    files = [_encoded(base.copy(), syntax) for syntax in _SYNTAXES]
    nested = base.copy()
    inner = Dataset()
    inner.CodeValue, inner.CodingSchemeDesignator = "T-D0050", "SRT"
    inner.ConceptCodeSequence = Sequence([Dataset()])
    nested.AnatomicRegionSequence = Sequence([inner, Dataset()])
    files += [_encoded(nested.copy(), syntax) for syntax in _SYNTAXES[:3]]
    with tempfile.TemporaryDirectory() as folder:
        dicomdir, *_ = write_file_set(generate_dataset(1, 1, 1, seed=3), Path(folder))
        files.append(dicomdir.read_bytes())
    return tuple(files)


def _boundaries(data: bytes) -> list[int]:
    """Offsets that look like the start of an element of the groups the sniffer walks (even offsets only)."""
    groups = (b"\x02\x00", b"\x08\x00", b"\x10\x00", b"\x20\x00", b"\x00\x02", b"\x00\x08", b"\x00\x20")
    return [i for i in range(128, min(len(data), 4096), 2) if data[i : i + 2] in groups] or [132]


@st.composite
def mutated_files(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(corpus())))
    for _ in range(draw(st.integers(0, 3))):
        where = draw(st.sampled_from(_boundaries(bytes(data))))
        how = draw(st.sampled_from(("truncate", "length16", "length32", "flip", "insert", "drop-meta", "repeat")))
        if how == "truncate":
            cut = where + draw(st.integers(0, 12))
            del data[cut:]
        elif how == "length16" and where + 8 <= len(data):
            data[where + 6 : where + 8] = struct.pack("<H", draw(st.sampled_from(_LENGTHS)) & 0xFFFF)
        elif how == "length32" and where + 12 <= len(data):
            data[where + 8 : where + 12] = struct.pack("<I", draw(st.sampled_from(_LENGTHS)))
        elif how == "flip" and data:
            at = draw(st.integers(0, len(data) - 1))
            data[at] ^= draw(st.integers(1, 255))
        elif how == "insert":
            data[where:where] = draw(st.binary(min_size=1, max_size=16))
        elif how == "drop-meta":
            meta_end = next((b for b in _boundaries(bytes(data)) if data[b : b + 2] != b"\x02\x00"), 132)
            del data[132:meta_end]
        elif how == "repeat":
            data[where:where] = data[where : where + draw(st.integers(8, 64))]
    return bytes(data)


def sniffed(data: bytes, first_read: int) -> tuple[Verdict, int]:
    """The sniffer's verdict and the furthest byte it asked for."""
    furthest = 0

    def read(start: int, end: int) -> bytes:
        nonlocal furthest
        furthest = max(furthest, end)
        return data[start:end]

    try:
        info = sniff_header(read, len(data), first_read=first_read, max_bytes=MAX_BYTES)
    except NotDicomError as refused:
        return Verdict("refused", reason=str(refused)), furthest
    if isinstance(info, MediaDirectory):
        return Verdict("dicomdir"), furthest
    assert isinstance(info, HeaderInfo)
    return Verdict("instance", (info.study_uid, info.series_uid, info.sop_uid)), furthest


def oracle(data: bytes) -> Verdict:
    """What pydicom reads of the same bytes, up to the last UID the sniffer needs."""
    try:
        meta, _ = _meta_group(data)
        if getattr(meta, "MediaStorageSOPClassUID", None) == MEDIA_STORAGE_DIRECTORY:
            return Verdict("dicomdir")  # known from its meta group, as the sniffer knows it: skipped, never read
        dataset: Dataset
        try:
            dataset = read_partial(io.BytesIO(data), stop_when=lambda tag, vr, length: tag > _LAST_UID_TAG)
        except zlib.error:  # pydicom inflates a deflated data set whole; the sniffer only its header, so pydicom
            dataset = _inflated_header(data)  # judges the part that inflates (the import reports the rest)
        uids = tuple(_raw_text(dataset, tag) for tag in (0x0020000D, 0x0020000E, 0x00080018))
    except Exception as exc:  # any failure of the reference reader is its verdict
        where = traceback.extract_tb(exc.__traceback__)[-1]
        reason = f"{type(exc).__name__}: {exc} ({Path(where.filename).name}:{where.lineno})"
        if Path(where.filename).parts[-2:] == ("pydicom", "charset.py"):  # pydicom's character-set lookup fails
            return Verdict("undecided", reason=reason)  # on some bytes (a NUL in (0008,0005)): no verdict here
        return Verdict("refused", reason=reason)
    return Verdict("instance", (uids[0], uids[1], uids[2]))


def _meta_group(data: bytes) -> tuple[Dataset, int]:
    """pydicom's reading of the file meta information alone (before any data set is inflated), and where its
    walk of the group ended: the data set's start (the group length may be damaged)."""
    fp = io.BytesIO(data)
    read_preamble(fp, False)
    return _read_file_meta_info(fp), fp.tell()


def _inflated_header(data: bytes) -> Dataset:
    """pydicom's reading of the inflatable start of a deflated data set (after the meta group)."""
    _, start = _meta_group(data)
    inflater, inflated = zlib.decompressobj(-zlib.MAX_WBITS), []
    for at in range(start, len(data), 64):
        try:
            inflated.append(inflater.decompress(data[at : at + 64]))
        except zlib.error:
            break
    return read_dataset(io.BytesIO(b"".join(inflated)), is_implicit_VR=False, is_little_endian=True,
                        stop_when=lambda tag, vr, length: tag > _LAST_UID_TAG)  # fmt: skip


def _raw_text(dataset: Dataset, tag: int) -> str:
    """An element's bytes as read (no value conversion: pydicom decodes values lazily, with the data set's
    character set, which is not what is compared here)."""
    raw = dataset.get_item(tag)
    if raw is None:
        raise KeyError(f"{tag:08X}")
    value = raw.value
    text = value.decode("ascii", errors="replace") if isinstance(value, bytes) else str(value)
    return text.strip(" \0")


def check(data: bytes, first_read: int) -> tuple[Verdict, Verdict, int]:
    """Assert the rule for one input; return both verdicts and the furthest byte the sniffer read (the bench
    counts them)."""
    mine, furthest = sniffed(data, first_read)
    theirs = oracle(data)
    assert furthest <= MAX_BYTES, f"read up to byte {furthest}, past the {MAX_BYTES}-byte limit"
    if mine.kind == "refused":
        assert mine.reason, "refused without a reason"
    elif theirs.kind != "undecided":
        assert mine == theirs, f"the sniffer read {mine}, pydicom {theirs}"
    return mine, theirs, furthest

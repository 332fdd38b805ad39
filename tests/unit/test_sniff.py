"""Header sniffing: ranged reads that grow only for long headers, and clear reasons for bad files."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.filewriter import dcmwrite

from devstack.fileset import write_file_set
from devstack.synthetic import generate_dataset, make_instance
from dicomflow.dicom.sniff import HeaderInfo, MediaDirectory, sniff_header
from dicomflow.errors import NotDicomError

UIDS: dict[str, Any] = {"study_uid": "1.2.3", "series_uid": "1.2.3.4", "sop_uid": "1.2.3.4.5"}


class Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.calls: list[tuple[int, int]] = []

    def __call__(self, start: int, end: int) -> bytes:
        self.calls.append((start, end))
        return self.data[start:end]

    @property
    def bytes_read(self) -> int:
        return sum(min(end, len(self.data)) - start for start, end in self.calls)


def _sniff(data: bytes, size: int | None = -1) -> tuple[object, Reader]:
    reader = Reader(data)
    info = sniff_header(reader, len(data) if size == -1 else size, first_read=65536, max_bytes=1 << 24)
    return info, reader


def test_sniff_reads_only_the_first_range_of_a_large_multiframe_file() -> None:
    data = make_instance(rows=512, columns=512, frames=8, **UIDS)  # 4 MiB of pixels
    info, reader = _sniff(data)
    assert (info.study_uid, info.series_uid, info.sop_uid) == ("1.2.3", "1.2.3.4", "1.2.3.4.5")  # type: ignore[attr-defined]
    assert reader.calls == [(0, 65536)]


def test_sniff_grows_the_read_for_a_header_longer_than_64_kib() -> None:
    dataset = pydicom.dcmread(io.BytesIO(make_instance(**UIDS)))
    dataset.add_new(0x00090010, "LO", "PRIVATE")
    dataset.add_new(0x00091010, "OB", b"\0" * 200_000)  # a large private element before the UIDs
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    info, reader = _sniff(buffer.getvalue())
    assert info.sop_uid == "1.2.3.4.5"  # type: ignore[attr-defined]
    assert len(reader.calls) == 2
    assert reader.calls[1][0] == 65536  # the second read continues, it does not start over
    assert reader.bytes_read < 300_000


def test_sniff_works_when_the_size_is_unknown() -> None:
    info, _ = _sniff(make_instance(**UIDS), size=None)
    assert info.sop_uid == "1.2.3.4.5"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty object"),
        (b"hello, this is text named .dcm", "no 'DICM' prefix"),
        (b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI", r"^unreadable DICOM: the object ends inside .* 132"),
        (make_instance(**UIDS)[128:], "no 'DICM' prefix"),  # no preamble
    ],
)
def test_sniff_rejects_what_is_not_storable_dicom(data: bytes, reason: str) -> None:
    with pytest.raises(NotDicomError, match=reason):
        _sniff(data)


def test_sniff_rejects_an_instance_without_a_sop_instance_uid() -> None:
    dataset = pydicom.dcmread(io.BytesIO(make_instance(**UIDS)))
    del dataset.SOPInstanceUID
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    with pytest.raises(NotDicomError, match="missing SOPInstanceUID"):
        _sniff(buffer.getvalue())


def test_sniff_of_a_2_gb_object_reads_only_its_header() -> None:
    # GIVEN a 2 GB object (header, then pixel data nobody should read), served lazily
    header = make_instance(rows=16, columns=16, **UIDS)
    size = 2 * 1024**3
    reader = Reader(b"")

    def read(start: int, end: int) -> bytes:
        reader.calls.append((start, end))
        chunk = header[start:end]
        return chunk + b"\0" * (min(end, size) - start - len(chunk))

    info = sniff_header(read, size, first_read=65536, max_bytes=1 << 24)
    assert isinstance(info, HeaderInfo) and info.sop_uid == "1.2.3.4.5"
    assert reader.calls == [(0, 65536)]


def test_sniff_accepts_a_file_whose_pixel_data_is_truncated() -> None:
    # the header is intact: intake queues it; whether the store takes it is the import's (and reconcile's) call
    data = make_instance(rows=64, columns=64, **UIDS)
    info, _ = _sniff(data[: len(data) - 4000])
    assert info.sop_uid == "1.2.3.4.5"  # type: ignore[attr-defined]


def _dataset_start(data: bytes) -> int:
    """Offset of the data set: after the file meta information group."""
    meta_length = int(pydicom.dcmread(io.BytesIO(data)).file_meta.FileMetaInformationGroupLength)
    return 132 + 12 + meta_length


def test_sniff_reports_dicm_followed_by_garbage_as_unreadable_dicom() -> None:
    # GIVEN 'DICM' after the preamble, then bytes that are no data elements
    garbage = bytes((index * 151 + 17) % 256 for index in range(5000))
    # WHEN sniffed THEN the reason says unreadable DICOM and where, not a missing UID
    reason = r"^unreadable DICOM: no file meta information \(group 0002\) at offset 132$"
    with pytest.raises(NotDicomError, match=reason):
        _sniff(b"\0" * 128 + b"DICM" + garbage)


def test_sniff_reports_garbage_after_a_valid_file_meta_with_its_offset_and_group() -> None:
    # GIVEN a real file meta information group followed by garbage instead of the data set
    data = make_instance(**UIDS, patient_name="SYNTH^SECRET^0001")
    start = _dataset_start(data)
    broken = data[:start] + b"hello, this is not a data set at all. " * 100
    # WHEN sniffed THEN the reason names the offset and the group it could not parse
    with pytest.raises(NotDicomError) as raised:
        _sniff(broken)
    reason = str(raised.value)
    assert reason.startswith(f"unreadable DICOM: the data element at offset {start} (group ")
    assert "missing" not in reason


def test_sniff_reports_an_element_that_breaks_off_after_the_uids_were_missing_as_unreadable() -> None:
    # GIVEN an instance whose data set is cut inside an element before any UID
    data = make_instance(**UIDS)
    start = _dataset_start(data)
    # WHEN only a few bytes into the data set remain THEN it is unreadable at that element, not "missing"
    with pytest.raises(NotDicomError, match=rf"^unreadable DICOM: the data element at offset {start} \(group 0008\)"):
        _sniff(data[: start + 10])


def test_sniff_reasons_never_carry_tag_values() -> None:
    # GIVEN well-formed headers with a patient name, broken in various places
    data = make_instance(**UIDS, patient_name="SYNTH^SECRET^0001")
    start = _dataset_start(data)
    reasons = []
    for cut in range(start, start + 400, 7):
        for tail in (b"", b"\xff" * 64, b"SYNTH^SECRET^0001" * 4):
            try:
                _sniff(data[:cut] + tail)
            except NotDicomError as exc:
                reasons.append(str(exc))
    # THEN no reason holds the name (or any part of it)
    assert reasons
    assert not [r for r in reasons if "SYNTH" in r or "SECRET" in r]


def test_sniff_still_reports_a_missing_uid_in_a_well_formed_file() -> None:
    dataset = pydicom.dcmread(io.BytesIO(make_instance(**UIDS)))
    del dataset.StudyInstanceUID
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    with pytest.raises(NotDicomError, match=r"^missing StudyInstanceUID$"):
        _sniff(buffer.getvalue())


@pytest.mark.parametrize("transfer_syntax", ["1.2.840.10008.1.2", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"])
def test_sniff_reads_implicit_big_endian_and_deflated_data_sets(transfer_syntax: str) -> None:
    dataset = pydicom.dcmread(io.BytesIO(make_instance(**UIDS)))
    del dataset.PixelData
    dataset.file_meta.TransferSyntaxUID = pydicom.uid.UID(transfer_syntax)
    buffer = io.BytesIO()
    dcmwrite(buffer, dataset, enforce_file_format=True)
    info, _ = _sniff(buffer.getvalue())
    assert isinstance(info, HeaderInfo)
    assert (info.study_uid, info.sop_uid, info.transfer_syntax) == ("1.2.3", "1.2.3.4.5", transfer_syntax)


def test_sniff_tolerates_a_repeated_element_as_readers_do() -> None:
    # GIVEN a file that repeats its SOP Instance UID element (seen in the wild; pydicom reads it)
    data = make_instance(**UIDS)
    start = _dataset_start(data)
    dataset = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    offset = data.index(b"\x08\x00\x18\x00UI", start)
    length = int.from_bytes(data[offset + 6 : offset + 8], "little")
    element = data[offset : offset + 8 + length]
    info, _ = _sniff(data[: offset + len(element)] + data[offset:])
    assert isinstance(info, HeaderInfo)
    assert info.sop_uid == dataset.SOPInstanceUID


def test_sniff_recognises_a_dicomdir_written_by_pydicom(tmp_path: Path) -> None:
    # GIVEN a media file-set written with pydicom's FileSet API
    dicomdir, *images = write_file_set(generate_dataset(1, 1, 2, seed=5), tmp_path)
    # WHEN its DICOMDIR is sniffed THEN it is a media directory, while its images are instances
    info, reader = _sniff(dicomdir.read_bytes())
    assert isinstance(info, MediaDirectory)
    assert len(reader.calls) == 1
    assert all(isinstance(_sniff(image.read_bytes())[0], HeaderInfo) for image in images)


def test_sniff_reads_an_implicit_data_set_whose_meta_says_explicit_as_readers_do() -> None:
    # GIVEN a writer bug seen in the wild: TransferSyntaxUID explicit VR, data set encoded implicit VR
    dataset = pydicom.dcmread(io.BytesIO(make_instance(**UIDS)))
    del dataset.PixelData
    buffer = io.BytesIO()
    dcmwrite(buffer, dataset, implicit_vr=True, little_endian=True, force_encoding=True)
    with pytest.warns(UserWarning, match="Expected explicit VR, but found implicit VR"):
        assert pydicom.dcmread(io.BytesIO(buffer.getvalue())).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    # WHEN sniffed THEN its UIDs are read, as pydicom reads them
    info, _ = _sniff(buffer.getvalue())
    assert isinstance(info, HeaderInfo) and info.sop_uid == "1.2.3.4.5"


def test_sniff_refuses_a_uid_repeated_with_another_value_since_readers_disagree_on_it() -> None:
    # GIVEN a file whose StudyInstanceUID element appears again, out of order, with another value (pydicom
    # keeps the last, a first-wins reader the first: the differential fuzzer found such files)
    data = make_instance(**UIDS)
    offset = data.index(b"\x20\x00\x0e\x00UI", _dataset_start(data))
    end = offset + 8 + int.from_bytes(data[offset + 6 : offset + 8], "little")
    repeated = b"\x20\x00\x0d\x00UI\x06\x009.8.7\x00"
    # WHEN sniffed THEN it is refused with a reason naming the element, not read as either instance
    with pytest.raises(NotDicomError, match=r"repeats StudyInstanceUID with a different value"):
        _sniff(data[:end] + repeated + data[end:])
    # while the same element repeated with the same value is still read
    same = b"\x20\x00\x0d\x00UI\x06\x001.2.3\x00"
    info, _ = _sniff(data[:end] + same + data[end:])
    assert isinstance(info, HeaderInfo) and info.study_uid == "1.2.3"


def test_sniff_caps_inflation_of_a_deflate_bomb_at_max_header_bytes() -> None:
    # GIVEN a 256 KiB upload whose deflated data set inflates to 256 MiB before its UIDs
    import tracemalloc

    from devstack.hostile import deflate_bomb

    bomb = deflate_bomb(256 << 20)
    assert len(bomb) < 1 << 20
    # WHEN it is sniffed with a 4 MiB header limit
    tracemalloc.start()
    try:
        with pytest.raises(NotDicomError, match=r"^not DICOM or header too large: .* inflates past 4194304 bytes"):
            sniff_header(Reader(bomb), len(bomb), first_read=65536, max_bytes=4 << 20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # THEN it is refused as not DICOM, having inflated no more than the limit (plus the upload itself)
    assert peak < 3 * (4 << 20) + 2 * len(bomb)


def test_sniff_still_reads_a_deflated_header_that_ends_within_the_cap() -> None:
    from devstack.hostile import deflate_bomb

    bomb = deflate_bomb(1 << 20, sop_uid="1.2.3.4.9")
    info, _ = _sniff(bomb)
    assert isinstance(info, HeaderInfo) and info.sop_uid == "1.2.3.4.9"

"""Header sniffing: ranged reads that grow only for long headers, and clear reasons for bad files."""

from __future__ import annotations

import io
from typing import Any

import pydicom
import pytest

from devstack.synthetic import make_instance
from dicomflow.errors import NotDicomError
from dicomflow.sniff import sniff_header

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
        (b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI", "cannot parse the DICOM header|missing StudyInstanceUID"),
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
    assert info.sop_uid == "1.2.3.4.5"
    assert reader.calls == [(0, 65536)]


def test_sniff_accepts_a_file_whose_pixel_data_is_truncated() -> None:
    # the header is intact: intake queues it; whether the store takes it is the import's (and reconcile's) call
    data = make_instance(rows=64, columns=64, **UIDS)
    info, _ = _sniff(data[: len(data) - 4000])
    assert info.sop_uid == "1.2.3.4.5"  # type: ignore[attr-defined]

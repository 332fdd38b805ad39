"""Rendering, raw frames, transcoding and MIME helpers of the emulator (pure functions on Part-10 bytes)."""

from __future__ import annotations

import io
import re

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from healthcare_emulator.render import (
    RenderError,
    frame_count,
    mime_extension,
    parse_mime_type,
    raw_frames,
    render_frame,
    render_frames,
    transcode,
)
from healthcare_emulator.transcode import EXPLICIT_VR_LITTLE_ENDIAN

ROWS, COLUMNS = 16, 16
# A horizontal gradient 800..1175; the default window (centre 1000, width 200) covers 900..1100.
RAMP = np.tile(np.arange(800, 1200, 25, dtype=np.uint16), (ROWS, 1))


def _base(syntax: str = ExplicitVRLittleEndian) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = UID(syntax)
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.PatientName = "Render^Test"
    return ds


def _bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def _mono(
    pixels: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    window: tuple[float, float] | tuple[list[float], list[float]] | None = (1000, 200),
    rescale: tuple[float, float] | None = None,
    rle: bool = False,
    syntax: str = ExplicitVRLittleEndian,
) -> bytes:
    """A 16-bit greyscale image; ``pixels`` is (rows, cols) or (frames, rows, cols)."""
    ds = _base(syntax)
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    if pixels.ndim == 3:
        ds.NumberOfFrames = pixels.shape[0]
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
    if rle:
        ds.compress(RLELossless, pixels.astype(np.uint16), generate_instance_uid=False)
    else:
        dtype = ">u2" if syntax == ExplicitVRBigEndian else "<u2"
        ds.PixelData = pixels.astype(dtype).tobytes()
        ds["PixelData"].VR = "OW"
    return _bytes(ds)


def _rgb(pixels: np.ndarray) -> bytes:
    """An 8-bit RGB image, interleaved; ``pixels`` is (rows, cols, 3)."""
    ds = _base()
    ds.Rows, ds.Columns = pixels.shape[:2]
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = pixels.astype(np.uint8).tobytes()
    ds["PixelData"].VR = "OB"
    return _bytes(ds)


def _no_pixels() -> bytes:
    ds = _base()
    ds.Modality = "SR"
    return _bytes(ds)


def _gray(image: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(image)))


def _frames(count: int) -> np.ndarray:
    return np.stack([RAMP + 10 * index for index in range(count)])


# ----------------------------------------------------------------------------------------------------- frame_count


def test_frame_count_is_one_without_number_of_frames() -> None:
    assert frame_count(_mono(RAMP)) == 1


def test_frame_count_reads_number_of_frames_for_native_and_rle() -> None:
    assert frame_count(_mono(_frames(3))) == 3
    assert frame_count(_mono(_frames(3), rle=True)) == 3


def test_frame_count_is_zero_without_pixel_data() -> None:
    assert frame_count(_no_pixels()) == 0


# ------------------------------------------------------------------------------------------------------- rendering


@pytest.mark.parametrize(("image_format", "pil_format"), [("png", "PNG"), ("jpeg", "JPEG")])
def test_render_frames_encodes_greyscale_at_the_image_size(image_format: str, pil_format: str) -> None:
    [encoded] = render_frames(_mono(RAMP[:, :12]), image_format)
    image = Image.open(io.BytesIO(encoded))
    assert (image.format, image.mode, image.size) == (pil_format, "L", (12, ROWS))


def test_render_frames_applies_header_window() -> None:
    image = _gray(render_frames(_mono(RAMP), "png")[0])
    assert image[0, 0] == 0  # 800, below the window
    assert image[0, 3] == 0  # 875
    assert image[0, -1] == 255  # 1175, above the window
    assert image[0, 13] == 255  # 1125
    assert abs(int(image[0, 8]) - 128) <= 1  # 1000, the centre
    assert 0 < image[0, 6] < image[0, 8] < image[0, 10] < 255  # 950 < 1000 < 1050 inside the window


def test_render_frames_uses_the_first_of_several_windows() -> None:
    single = render_frames(_mono(RAMP), "png")
    several = render_frames(_mono(RAMP, window=([1000.0, 40.0], [200.0, 400.0])), "png")
    assert several == single


def test_render_frames_applies_rescale_before_the_window() -> None:
    # stored 800..1175 * 2 - 1000 -> 600..1350; the window 900..1100 then holds stored 950..1050
    image = _gray(render_frames(_mono(RAMP, rescale=(2, -1000)), "png")[0])
    assert image[0, 5] == 0  # stored 925 -> 850
    assert abs(int(image[0, 8]) - 128) <= 1  # stored 1000 -> 1000
    assert image[0, 11] == 255  # stored 1075 -> 1150


def test_render_frames_without_window_stretches_min_to_max() -> None:
    image = _gray(render_frames(_mono(RAMP, window=None), "png")[0])
    assert (image[0, 0], image[0, -1]) == (0, 255)
    assert (np.diff(image[0].astype(int)) > 0).all()


def test_render_frames_inverts_monochrome1() -> None:
    normal = _gray(render_frames(_mono(RAMP), "png")[0]).astype(int)
    inverted = _gray(render_frames(_mono(RAMP, photometric="MONOCHROME1"), "png")[0]).astype(int)
    assert (inverted == 255 - normal).all()
    assert (inverted[0, 0], inverted[0, -1]) == (255, 0)


@pytest.mark.parametrize(("image_format", "mode"), [("png", "RGB"), ("jpeg", "RGB")])
def test_render_frames_keeps_rgb_in_colour(image_format: str, mode: str) -> None:
    pixels = np.zeros((8, 10, 3), dtype=np.uint8)
    pixels[:, :5] = (255, 0, 0)
    pixels[:, 5:] = (0, 0, 255)
    [encoded] = render_frames(_rgb(pixels), image_format)
    image = Image.open(io.BytesIO(encoded))
    assert (image.mode, image.size) == (mode, (10, 8))
    decoded = np.asarray(image).astype(int)
    if image_format == "png":
        assert (decoded == pixels).all()
    else:  # lossy: the colours survive, the exact values need not
        assert decoded[4, 1, 0] > 200 and decoded[4, 1, 2] < 60
        assert decoded[4, 8, 2] > 200 and decoded[4, 8, 0] < 60


def test_render_frames_gives_one_distinct_image_per_frame() -> None:
    frames = np.stack([RAMP, RAMP[:, ::-1], RAMP[:, ::-1]])
    images = render_frames(_mono(frames), "png")
    assert len(images) == 3
    assert images[0] != images[1]
    assert images[1] == images[2]


@pytest.mark.parametrize("image_format", ["png", "jpeg"])
def test_render_frame_matches_render_frames(image_format: str) -> None:
    data = _mono(_frames(3))
    assert [render_frame(data, n, image_format) for n in (1, 2, 3)] == render_frames(data, image_format)


def test_render_frame_out_of_range_raises() -> None:
    data = _mono(_frames(2))
    for number in (0, 3, -1):
        with pytest.raises(RenderError, match=f"frame {number} is out of range"):
            render_frame(data, number, "png")


def test_render_of_rle_matches_uncompressed() -> None:
    frames = _frames(2)
    assert render_frames(_mono(frames, rle=True), "png") == render_frames(_mono(frames), "png")
    assert render_frame(_mono(frames, rle=True), 2, "jpeg") == render_frame(_mono(frames), 2, "jpeg")


def test_render_without_pixel_data_raises() -> None:
    with pytest.raises(RenderError, match="no pixel data"):
        render_frames(_no_pixels(), "png")
    with pytest.raises(RenderError, match="no pixel data"):
        render_frame(_no_pixels(), 1, "jpeg")


def test_render_unknown_format_raises() -> None:
    with pytest.raises(RenderError, match="unsupported image format 'gif'"):
        render_frames(_mono(RAMP), "gif")


def test_errors_wrap_pydicom_exceptions_without_tag_values() -> None:
    with pytest.raises(RenderError, match=r"^cannot read DICOM file: InvalidDicomError$"):
        render_frames(b"not dicom at all", "png")
    truncated = _mono(RAMP)[:-100]  # PixelData shorter than Rows x Columns
    with pytest.raises(RenderError, match=r"^cannot decode pixel data: \w+$") as caught:
        render_frames(truncated, "png")
    assert "Render^Test" not in str(caught.value)


# ------------------------------------------------------------------------------------------------------ raw frames


def test_raw_frames_of_native_data_are_frame_slices() -> None:
    frames = _frames(3)
    raw = raw_frames(_mono(frames))
    assert [len(frame) for frame in raw] == [ROWS * COLUMNS * 2] * 3
    for frame, expected in zip(raw, frames, strict=True):
        assert (np.frombuffer(frame, dtype="<u2").reshape(ROWS, COLUMNS) == expected).all()


def test_raw_frames_of_rgb_counts_every_sample() -> None:
    [frame] = raw_frames(_rgb(np.full((8, 10, 3), 7, dtype=np.uint8)))
    assert len(frame) == 8 * 10 * 3


def test_raw_frames_of_rle_are_the_encapsulated_frames() -> None:
    data = _mono(_frames(3), rle=True)
    raw = raw_frames(data)
    assert len(raw) == frame_count(data) == 3
    assert all(raw)
    assert all(frame[:4] == (2).to_bytes(4, "little") for frame in raw)  # RLE header: one segment per byte plane


def test_raw_frames_of_jpeg_return_each_codestream() -> None:
    jpegs = []
    for value in (40, 200):
        buffer = io.BytesIO()
        Image.fromarray(np.full((8, 8), value, dtype=np.uint8)).save(buffer, format="JPEG")
        jpegs.append(buffer.getvalue())
    ds = _base(JPEGBaseline8Bit)
    ds.Rows, ds.Columns, ds.NumberOfFrames = 8, 8, 2
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = encapsulate(jpegs)
    raw = raw_frames(_bytes(ds))
    assert [frame.rstrip(b"\x00") for frame in raw] == [jpeg.rstrip(b"\x00") for jpeg in jpegs]


def test_raw_frames_of_one_bit_frames_are_repacked_per_frame() -> None:
    # 3 x 3 one-bit frames are 9 bits each: the second frame starts mid-byte in PixelData
    first = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]], dtype=np.uint8)
    second = 1 - first
    ds = _base()
    ds.Rows, ds.Columns, ds.NumberOfFrames = 3, 3, 2
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 1, 1, 0, 0
    ds.PixelData = np.packbits(np.concatenate([first.ravel(), second.ravel()]), bitorder="little").tobytes()
    raw = raw_frames(_bytes(ds))
    unpacked = [np.unpackbits(np.frombuffer(f, dtype=np.uint8), bitorder="little")[:9] for f in raw]
    assert [len(f) for f in raw] == [2, 2]
    assert (unpacked[0] == first.ravel()).all()
    assert (unpacked[1] == second.ravel()).all()


def test_raw_frames_without_pixel_data_raises() -> None:
    with pytest.raises(RenderError, match="no pixel data"):
        raw_frames(_no_pixels())


# ------------------------------------------------------------------------------------------------------- transcode


def test_transcode_rle_to_explicit_little_endian_keeps_the_pixels() -> None:
    frames = _frames(2)
    rle = _mono(frames, rle=True)
    explicit = transcode(rle, EXPLICIT_VR_LITTLE_ENDIAN)
    ds = pydicom.dcmread(io.BytesIO(explicit))
    source = pydicom.dcmread(io.BytesIO(rle))
    assert ds.file_meta.TransferSyntaxUID == EXPLICIT_VR_LITTLE_ENDIAN
    assert not ds["PixelData"].is_undefined_length
    assert not ds.PixelData.startswith(b"\xfe\xff\x00\xe0")  # no item tag: not encapsulated
    assert len(ds.PixelData) == 2 * ROWS * COLUMNS * 2
    assert np.array_equal(ds.pixel_array, frames)
    assert ds.SOPInstanceUID == source.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID
    assert ds.PatientName == "Render^Test"


@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, ExplicitVRBigEndian])
def test_transcode_native_syntaxes_to_explicit_little_endian(syntax: str) -> None:
    source = _mono(RAMP, syntax=syntax)
    explicit = transcode(source, EXPLICIT_VR_LITTLE_ENDIAN)
    ds = pydicom.dcmread(io.BytesIO(explicit))
    assert ds.file_meta.TransferSyntaxUID == EXPLICIT_VR_LITTLE_ENDIAN
    assert np.array_equal(ds.pixel_array, RAMP)
    assert render_frames(explicit, "png") == render_frames(source, "png")


def test_transcode_to_the_stored_syntax_returns_the_same_bytes() -> None:
    for data in (_mono(RAMP), _mono(RAMP, rle=True), _no_pixels()):
        syntax = pydicom.dcmread(io.BytesIO(data)).file_meta.TransferSyntaxUID
        assert transcode(data, syntax) is data


def test_transcode_without_pixel_data_rewrites_the_header() -> None:
    implicit = _base(ImplicitVRLittleEndian)
    ds = pydicom.dcmread(io.BytesIO(transcode(_bytes(implicit), EXPLICIT_VR_LITTLE_ENDIAN)))
    assert ds.file_meta.TransferSyntaxUID == EXPLICIT_VR_LITTLE_ENDIAN
    assert ds.PatientName == "Render^Test"


@pytest.mark.parametrize("target", [RLELossless, ExplicitVRBigEndian, JPEGLSLossless, "1.2.840.10008.1.2.4.92"])
def test_transcode_to_other_syntaxes_is_not_supported(target: str) -> None:
    with pytest.raises(RenderError, match=f"^transcoding to {re.escape(target)} is not supported$"):
        transcode(_mono(RAMP), target)


# ------------------------------------------------------------------------------------------------------ MIME types


@pytest.mark.parametrize(
    ("mime_type", "expected"),
    [
        ("application/dicom", ("application/dicom", {})),
        ("application/dicom; transfer-syntax=1.2.3", ("application/dicom", {"transfer-syntax": "1.2.3"})),
        ('Application/DICOM ;Transfer-Syntax = "1.2.3" ', ("application/dicom", {"transfer-syntax": "1.2.3"})),
        ("application/dicom; transfer-syntax=*", ("application/dicom", {"transfer-syntax": "*"})),
        (
            'multipart/related; type="application/dicom"; boundary=x',
            ("multipart/related", {"type": "application/dicom", "boundary": "x"}),
        ),
        ("image/png;", ("image/png", {})),
    ],
)
def test_parse_mime_type(mime_type: str, expected: tuple[str, dict[str, str]]) -> None:
    assert parse_mime_type(mime_type) == expected


@pytest.mark.parametrize(
    ("mime_type", "extension"),
    [
        ("application/dicom", ".dcm"),
        ("application/dicom; transfer-syntax=1.2.840.10008.1.2.1", ".dcm"),
        ("application/dicom; transfer-syntax=*", ".dcm"),
        ("image/jpeg", ".jpg"),
        ("IMAGE/PNG", ".png"),
        ("application/octet-stream", ""),
    ],
)
def test_mime_extension(mime_type: str, extension: str) -> None:
    assert mime_extension(mime_type) == extension


def test_mime_extension_rejects_unknown_types() -> None:
    with pytest.raises(ValueError, match="text/plain"):
        mime_extension("text/plain")

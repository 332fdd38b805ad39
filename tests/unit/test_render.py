"""Rendering, raw frames and transcoding of stored instances."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, RLELossless, generate_uid

from healthcare_emulator.render import (
    EXPLICIT_VR_LITTLE_ENDIAN,
    RenderError,
    frame_count,
    mime_extension,
    parse_mime_type,
    raw_frames,
    render_frame,
    render_frames,
    transcode,
)


def _image(
    pixels: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    window: tuple[int, int] | None = (1000, 200),
    rle: bool = False,
    with_pixels: bool = True,
) -> bytes:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.7")
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    frames = pixels.shape[0] if pixels.ndim == 3 else 1
    ds.Rows, ds.Columns = pixels.shape[-2], pixels.shape[-1]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    if frames > 1:
        ds.NumberOfFrames = frames
    if window:
        ds.WindowCenter, ds.WindowWidth = window
    if with_pixels:
        if rle:
            ds.compress(RLELossless, pixels.astype(np.uint16), encoding_plugin="pydicom", generate_instance_uid=False)
        else:
            ds.PixelData = pixels.astype(np.uint16).tobytes()
            ds["PixelData"].VR = "OW"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _gray(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("L"))


RAMP = np.tile(np.arange(800, 1200, 25, dtype=np.uint16), (16, 1))  # 16 x 16, values 800..1175


def test_render_frames_applies_header_window() -> None:
    # GIVEN a ramp across a window centred at 1000, width 200 (900..1100)
    [png] = render_frames(_image(RAMP), "png")
    image = _gray(png)
    # THEN values below the window are black, above are white, the centre is mid-grey
    assert image[0, 0] == 0  # 800
    assert image[0, -1] == 255  # 1175
    assert abs(int(image[0, 8]) - 128) <= 2  # 1000


def test_render_frames_without_window_stretches_min_to_max() -> None:
    image = _gray(render_frames(_image(RAMP, window=None), "png")[0])
    assert (image.min(), image.max()) == (0, 255)


def test_render_frames_inverts_monochrome1() -> None:
    normal = _gray(render_frames(_image(RAMP), "png")[0])
    inverted = _gray(render_frames(_image(RAMP, photometric="MONOCHROME1"), "png")[0])
    assert (inverted.astype(int) == 255 - normal.astype(int)).all()


@pytest.mark.parametrize(("fmt", "pil"), [("png", "PNG"), ("jpeg", "JPEG")])
def test_render_frames_one_image_per_frame(fmt: str, pil: str) -> None:
    frames = np.stack([RAMP, RAMP[:, ::-1], RAMP // 2])
    images = render_frames(_image(frames), fmt)
    assert len(images) == 3
    assert all(Image.open(io.BytesIO(i)).format == pil for i in images)
    assert all(Image.open(io.BytesIO(i)).size == (16, 16) for i in images)
    assert images[0] != images[1]
    assert render_frame(_image(frames), 2, fmt) == images[1]
    with pytest.raises(RenderError, match="frame 4 is out of range"):
        render_frame(_image(frames), 4, fmt)


def test_render_of_rle_matches_uncompressed() -> None:
    assert render_frames(_image(RAMP, rle=True), "png") == render_frames(_image(RAMP), "png")


def test_frame_count_and_raw_frames_for_native_and_rle() -> None:
    frames = np.stack([RAMP, RAMP + 1])
    native = _image(frames)
    assert frame_count(native) == 2
    raw = raw_frames(native)
    assert [len(f) for f in raw] == [16 * 16 * 2] * 2
    assert np.frombuffer(raw[1], dtype="<u2").reshape(16, 16).tolist() == (RAMP + 1).tolist()
    rle = raw_frames(_image(frames, rle=True))
    assert len(rle) == 2
    assert all(rle)
    assert frame_count(_image(RAMP, with_pixels=False)) == 0


def test_transcode_rle_to_explicit_little_endian_keeps_the_pixels() -> None:
    rle = _image(RAMP, rle=True)
    explicit = transcode(rle, EXPLICIT_VR_LITTLE_ENDIAN)
    dataset = pydicom.dcmread(io.BytesIO(explicit))
    assert dataset.file_meta.TransferSyntaxUID == EXPLICIT_VR_LITTLE_ENDIAN
    assert (dataset.pixel_array == RAMP).all()
    assert transcode(explicit, EXPLICIT_VR_LITTLE_ENDIAN) == explicit
    with pytest.raises(RenderError, match=r"transcoding to 1\.2\.840\.10008\.1\.2\.4\.50 is not supported"):
        transcode(explicit, "1.2.840.10008.1.2.4.50")


def test_errors_never_leak_third_party_exceptions() -> None:
    with pytest.raises(RenderError, match="no pixel data"):
        render_frames(_image(RAMP, with_pixels=False), "png")
    with pytest.raises(RenderError, match="cannot read DICOM file"):
        render_frames(b"not dicom", "png")


def test_mime_helpers() -> None:
    assert parse_mime_type('application/dicom; transfer-syntax="1.2.3"') == (
        "application/dicom",
        {"transfer-syntax": "1.2.3"},
    )
    assert [
        mime_extension(m) for m in ("application/dicom", "image/jpeg", "image/png", "application/octet-stream")
    ] == [".dcm", ".jpg", ".png", ""]
    with pytest.raises(ValueError, match="text/plain"):
        mime_extension("text/plain")

"""Every transfer syntax of the codec corpus decodes, renders and transcodes (pure functions on Part-10 bytes)."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.uid import JPEG2000, JPEGBaseline8Bit

from healthcare_emulator.render import RenderError, raw_frames, render_frame, render_frames, transcode
from healthcare_emulator.transcode import TRANSCODE_TARGETS
from tests.codec_corpus import ALL_SYNTAXES, LOSSY, CodecSample, codec_samples, decoded

SAMPLES = codec_samples()
BY_NAME = {sample.name: sample for sample in SAMPLES}


def _dataset(data: bytes) -> pydicom.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(io.BytesIO(data))


def test_the_corpus_covers_every_syntax() -> None:
    assert {sample.syntax for sample in SAMPLES} == ALL_SYNTAXES


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.name)
@pytest.mark.parametrize(("image_format", "pil_format"), [("png", "PNG"), ("jpeg", "JPEG")])
def test_every_syntax_renders_each_frame(sample: CodecSample, image_format: str, pil_format: str) -> None:
    ds = _dataset(sample.data)
    images = render_frames(sample.data, image_format)
    assert len(images) == sample.frames
    last = render_frame(sample.data, sample.frames, image_format)
    for data in (*images, last):
        image = Image.open(io.BytesIO(data))
        assert image.format == pil_format
        assert image.size == (ds.Columns, ds.Rows)


LOSSLESS_SIGNED = ["implicit-le-signed16", "rle-signed16", "jpegls-lossless-signed16", "j2k-lossless-signed16"]


@pytest.mark.parametrize("name", LOSSLESS_SIGNED)
def test_lossless_syntaxes_render_exactly_like_the_native_instance(name: str) -> None:
    # The same signed 16-bit frames under the same window: identical PNGs, whatever the encoding.
    native = BY_NAME["explicit-le-signed16"].data
    assert render_frames(BY_NAME[name].data, "png") == render_frames(native, "png")


def test_signed_frames_are_windowed_across_the_whole_grey_range() -> None:
    png = render_frame(BY_NAME["j2k-lossless-signed16"].data, 1, "png")
    pixels = np.asarray(Image.open(io.BytesIO(png)))
    assert pixels.min() == 0 and pixels.max() == 255  # window 0 +- 1000 clips both ends of -12000..15600


def test_palette_and_ybr_render_as_colour() -> None:
    for name in ("palette-colour", "ybr-full-multiframe", "jpeg-baseline-ybr422", "jpeg-lossless-sv1"):
        image = Image.open(io.BytesIO(render_frame(BY_NAME[name].data, 1, "png")))
        assert image.mode == "RGB", name


def _within_tolerance(source: CodecSample, target: str, result: np.ndarray, original: np.ndarray) -> None:
    assert result.shape == original.shape
    if source.syntax in LOSSY or target in (JPEG2000, JPEGBaseline8Bit):
        span = max(float(original.max() - original.min()), 1.0)
        assert float(np.abs(result - original).mean()) <= 0.03 * span
    else:
        assert np.array_equal(result, original)


def _expected_refusal(sample: CodecSample, target: str) -> str | None:
    ds = _dataset(sample.data)
    photometric = str(ds.PhotometricInterpretation)
    if target == JPEGBaseline8Bit and (int(ds.BitsAllocated) != 8 or photometric == "PALETTE COLOR"):
        return "JPEG Baseline"
    if target == JPEG2000 and photometric == "PALETTE COLOR":
        return "cannot encode pixel data"  # pydicom refuses lossy compression of palette indices
    return None


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.name)
@pytest.mark.parametrize("target", TRANSCODE_TARGETS)
def test_every_syntax_transcodes_to_each_target(sample: CodecSample, target: str) -> None:
    refusal = _expected_refusal(sample, target)
    if refusal is not None:
        with pytest.raises(RenderError, match=refusal):
            transcode(sample.data, target)
        return
    result = transcode(sample.data, target)
    ds = _dataset(result)
    assert ds.file_meta.TransferSyntaxUID == target
    assert ds.SOPInstanceUID == sample.sop_uid == ds.file_meta.MediaStorageSOPInstanceUID
    assert len(raw_frames(result)) == sample.frames
    _within_tolerance(sample, target, decoded(result), decoded(sample.data))


def test_an_undecodable_syntax_is_a_render_error_not_a_crash() -> None:
    ds = _dataset(BY_NAME["j2k-lossless-rgb"].data)
    ds.file_meta.TransferSyntaxUID = pydicom.uid.UID("1.2.840.10008.1.2.4.100")  # MPEG2: no decoder
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    data = buffer.getvalue()
    with pytest.raises(RenderError, match=r"^cannot decode pixel data"):
        render_frames(data, "png")
    with pytest.raises(RenderError, match=r"^cannot decode pixel data"):
        transcode(data, TRANSCODE_TARGETS[1])

"""Pixel data for exports and WADO-RS: rendered JPEG/PNG frames, raw frames, transcoding to Explicit VR LE."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.pixels.processing import apply_modality_lut
from pydicom.uid import UID

EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"

_EXTENSIONS = {
    "application/dicom": ".dcm",
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "application/octet-stream": "",
}
_PIL_FORMATS = {"jpeg": "JPEG", "png": "PNG"}


class RenderError(Exception):
    """The instance cannot be rendered or transcoded; the message names the reason, never a tag value."""


def parse_mime_type(mime_type: str) -> tuple[str, dict[str, str]]:
    """``"application/dicom; transfer-syntax=1.2.3"`` -> ``("application/dicom", {"transfer-syntax": "1.2.3"})``."""
    head, *rest = mime_type.split(";")
    params: dict[str, str] = {}
    for part in rest:
        key, eq, value = part.partition("=")
        if eq:
            params[key.strip().lower()] = value.strip().strip('"')
    return head.strip().lower(), params


def mime_extension(mime_type: str) -> str:
    """The file extension an export uses for ``mime_type``; ValueError naming an unknown type."""
    base, _ = parse_mime_type(mime_type)
    if base not in _EXTENSIONS:
        raise ValueError(f"unsupported MIME type {mime_type!r}")
    return _EXTENSIONS[base]


def _read(data: bytes) -> Dataset:
    try:
        return pydicom.dcmread(io.BytesIO(data))
    except Exception as exc:
        raise RenderError(f"cannot read DICOM file: {type(exc).__name__}") from exc


def frame_count(data: bytes) -> int:
    """NumberOfFrames (1 when absent); 0 when the instance has no pixel data."""
    dataset = _read(data)
    if "PixelData" not in dataset:
        return 0
    return int(dataset.get("NumberOfFrames", 1) or 1)


def _frames_array(dataset: Dataset) -> np.ndarray[Any, Any]:
    if "PixelData" not in dataset:
        raise RenderError("the instance has no pixel data")
    try:
        array: np.ndarray[Any, Any] = dataset.pixel_array
    except Exception as exc:
        raise RenderError(f"cannot decode pixel data: {type(exc).__name__}") from exc
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    samples = int(dataset.get("SamplesPerPixel", 1) or 1)
    if frames == 1:
        array = array[np.newaxis, ...]
    if samples == 1 and array.ndim == 4:
        array = array[..., 0]
    return array


def _to_8bit(dataset: Dataset, frame: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    if int(dataset.get("SamplesPerPixel", 1) or 1) == 3:
        if frame.dtype != np.uint8:
            peak = float(frame.max()) or 1.0
            frame = frame.astype(np.float64) * 255.0 / peak
        clipped: np.ndarray[Any, Any] = np.clip(frame, 0, 255).astype(np.uint8)
        return clipped
    values: np.ndarray[Any, Any] = np.asarray(apply_modality_lut(frame, dataset), dtype=np.float64)
    center, width = _window(dataset)
    if center is None or width is None or width < 1:
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) / (high - low or 1.0) * 255.0
    else:
        # PS3.3 C.11.2.1.2.1 linear VOI LUT function
        scaled = ((values - (center - 0.5)) / (width - 1) + 0.5) * 255.0
    result = np.clip(scaled, 0, 255)
    if str(dataset.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        result = 255.0 - result
    return np.rint(result).astype(np.uint8)


def _window(dataset: Dataset) -> tuple[float | None, float | None]:
    def first(keyword: str) -> float | None:
        value = dataset.get(keyword)
        if value is None or value == "":
            return None
        if isinstance(value, pydicom.multival.MultiValue):
            value = value[0]
        return float(value)

    return first("WindowCenter"), first("WindowWidth")


def _encode(image: np.ndarray[Any, Any], image_format: str) -> bytes:
    if image_format not in _PIL_FORMATS:
        raise RenderError(f"unsupported image format {image_format!r}")
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=_PIL_FORMATS[image_format])
    return buffer.getvalue()


def render_frames(data: bytes, image_format: str) -> list[bytes]:
    """One encoded 8-bit image per frame: modality LUT, then the header's window (else min/max)."""
    dataset = _read(data)
    return [_encode(_to_8bit(dataset, frame), image_format) for frame in _frames_array(dataset)]


def render_frame(data: bytes, frame_number: int, image_format: str) -> bytes:
    """Frame ``frame_number`` (1-based) as an encoded image."""
    dataset = _read(data)
    frames = _frames_array(dataset)
    if not 1 <= frame_number <= len(frames):
        raise RenderError(f"frame {frame_number} is out of range: the instance has {len(frames)} frame(s)")
    return _encode(_to_8bit(dataset, frames[frame_number - 1]), image_format)


def raw_frames(data: bytes) -> list[bytes]:
    """Each frame's pixel data as stored: byte slices for native syntaxes, the fragments for encapsulated ones."""
    dataset = _read(data)
    if "PixelData" not in dataset:
        raise RenderError("the instance has no pixel data")
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    pixel_data: bytes = dataset.PixelData
    if dataset.file_meta.TransferSyntaxUID.is_compressed:
        return list(generate_frames(pixel_data, number_of_frames=frames))
    rows, columns = int(dataset.Rows), int(dataset.Columns)
    samples = int(dataset.get("SamplesPerPixel", 1) or 1)
    bits = int(dataset.BitsAllocated)
    frame_bytes = rows * columns * samples * bits // 8
    return [pixel_data[index * frame_bytes : (index + 1) * frame_bytes] for index in range(frames)]


def transcode(data: bytes, transfer_syntax_uid: str) -> bytes:
    """The instance in ``transfer_syntax_uid`` (same syntax: the same bytes); only Explicit VR LE is a target."""
    dataset = _read(data)
    current = str(dataset.file_meta.TransferSyntaxUID)
    if current == transfer_syntax_uid:
        return data
    if transfer_syntax_uid != EXPLICIT_VR_LITTLE_ENDIAN:
        raise RenderError(f"transcoding to {transfer_syntax_uid} is not supported")
    try:
        if dataset.file_meta.TransferSyntaxUID.is_compressed:
            dataset.decompress()
        dataset.file_meta.TransferSyntaxUID = UID(EXPLICIT_VR_LITTLE_ENDIAN)
        buffer = io.BytesIO()
        dataset.save_as(buffer, enforce_file_format=True, little_endian=True, implicit_vr=False)
    except RenderError:
        raise
    except Exception as exc:
        raise RenderError(f"cannot transcode: {type(exc).__name__}") from exc
    return buffer.getvalue()

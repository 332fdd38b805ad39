"""Pure pixel functions for WADO-RS rendered/frames and ``dicomStores.export``: render, raw frames, transcode, MIME."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from io import BytesIO
from typing import Any

import numpy as np
import numpy.typing as npt
import pydicom
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.pixels.processing import apply_color_lut, apply_modality_lut
from pydicom.pixels.utils import iter_pixels, pixel_array
from pydicom.uid import UID

from healthcare_emulator.transcode import (
    COMPRESSED_TARGETS,
    EXPLICIT_VR_LITTLE_ENDIAN,
    TRANSCODE_TARGETS,
    TranscodeError,
    compress,
    write,
)

_IMAGE_FORMATS = {"jpeg": "JPEG", "png": "PNG"}
_EXTENSIONS = {
    "application/dicom": ".dcm",
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "application/octet-stream": "",
}
# Byte width of the values of the "other" VRs that must be swapped when leaving big endian.
_SWAP_WIDTHS = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}
_PARAMETER = re.compile(r';\s*([^=;\s]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')


class RenderError(Exception):
    """The instance cannot be rendered/transcoded (no pixel data, unsupported syntax...).

    The message names the reason, never tag values.
    """


@contextmanager
def _guard(action: str) -> Iterator[None]:
    """Turn any pydicom/numpy/Pillow failure into a RenderError naming only the exception class."""
    try:
        yield
    except RenderError:
        raise
    except Exception as exc:
        raise RenderError(f"cannot {action}: {type(exc).__name__}") from exc


def _read(data: bytes) -> Dataset:
    with _guard("read DICOM file"):
        return pydicom.dcmread(BytesIO(data))


def _syntax(ds: Dataset) -> UID:
    uid = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if not uid:
        raise RenderError("file meta information has no TransferSyntaxUID")
    return UID(str(uid))


def _count(ds: Dataset) -> int:
    if "PixelData" not in ds:
        return 0
    with _guard("read NumberOfFrames"):
        frames = int(ds.get("NumberOfFrames") or 1)
    return max(frames, 1)


def _require_pixels(ds: Dataset) -> int:
    frames = _count(ds)
    if frames == 0:
        raise RenderError("the instance has no pixel data")
    return frames


def frame_count(data: bytes) -> int:
    """NumberOfFrames (at least 1) of an instance with PixelData; 0 if it has none."""
    return _count(_read(data))


# ----------------------------------------------------------------------------------------------------- rendering


def _first_float(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, list | tuple | pydicom.multival.MultiValue):
        if len(value) == 0:
            return None
        value = value[0]
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if np.isfinite(result) else None


def _apply_window(values: npt.NDArray[np.float64], center: float, width: float, function: str) -> npt.NDArray[Any]:
    """Map modality values to 0..255 with the DICOM VOI window (PS3.3 C.11.2.1.2)."""
    if function == "SIGMOID":
        return 255.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
    if function == "LINEAR_EXACT":
        return np.clip((values - center) / width + 0.5, 0.0, 1.0) * 255.0
    if width <= 1.0:  # LINEAR with width 1 is a threshold at center - 0.5
        return np.where(values > center - 0.5, 255.0, 0.0)
    return np.clip((values - (center - 0.5)) / (width - 1.0) + 0.5, 0.0, 1.0) * 255.0


def _monochrome_to_8bit(arr: npt.NDArray[Any], ds: Dataset) -> npt.NDArray[np.uint8]:
    values = np.asarray(apply_modality_lut(arr, ds), dtype=np.float64)
    center = _first_float(ds.get("WindowCenter"))
    width = _first_float(ds.get("WindowWidth"))
    if center is not None and width is not None and width > 0:
        function = str(ds.get("VOILUTFunction") or "LINEAR").strip().upper()
        scaled = _apply_window(values, center, width, function)
    else:
        low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
    out: npt.NDArray[np.uint8] = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    if str(ds.get("PhotometricInterpretation", "")).strip() == "MONOCHROME1":
        out = 255 - out
    return out


def _colour_to_8bit(arr: npt.NDArray[Any], bits: int) -> npt.NDArray[np.uint8]:
    """Keep the top 8 of ``bits`` significant bits of each RGB sample."""
    shift = max(bits - 8, 0) if arr.dtype.itemsize > 1 else 0
    shifted: npt.NDArray[np.uint8] = np.clip(arr.astype(np.int64) >> shift, 0, 255).astype(np.uint8)
    return shifted


def _to_image(arr: npt.NDArray[Any], ds: Dataset, pil_format: str) -> bytes:
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if photometric == "PALETTE COLOR":
        rgb = np.asarray(apply_color_lut(arr, ds))
        pixels = _colour_to_8bit(rgb, 8 * rgb.dtype.itemsize)
    elif int(ds.get("SamplesPerPixel") or 1) > 1:
        pixels = _colour_to_8bit(arr, int(ds.get("BitsStored") or 8))
    else:
        pixels = _monochrome_to_8bit(arr, ds)
    buffer = BytesIO()
    image = Image.fromarray(np.ascontiguousarray(pixels))
    if pil_format == "JPEG":
        image.save(buffer, format="JPEG", quality=90)
    else:
        image.save(buffer, format="PNG")
    return buffer.getvalue()


def _pil_format(image_format: str) -> str:
    pil_format = _IMAGE_FORMATS.get(image_format.strip().lower())
    if pil_format is None:
        raise RenderError(f"unsupported image format {image_format!r}; expected 'jpeg' or 'png'")
    return pil_format


def render_frames(data: bytes, image_format: str) -> list[bytes]:
    """One encoded 8-bit image (``"jpeg"`` or ``"png"``) per frame, with modality LUT and VOI window applied."""
    pil_format = _pil_format(image_format)
    ds = _read(data)
    _require_pixels(ds)
    with _guard("decode pixel data"):
        arrays = list(iter_pixels(ds))
    with _guard("render pixel data"):
        return [_to_image(arr, ds, pil_format) for arr in arrays]


def render_frame(data: bytes, frame_number: int, image_format: str) -> bytes:
    """The 1-based ``frame_number`` rendered like :func:`render_frames`."""
    pil_format = _pil_format(image_format)
    ds = _read(data)
    frames = _require_pixels(ds)
    if not 1 <= frame_number <= frames:
        raise RenderError(f"frame {frame_number} is out of range")
    with _guard("decode pixel data"):
        arr = pixel_array(ds, index=frame_number - 1)
    with _guard("render pixel data"):
        return _to_image(arr, ds, pil_format)


# ---------------------------------------------------------------------------------------------------- raw frames


def _native_frames(ds: Dataset, frames: int) -> list[bytes]:
    with _guard("read the image attributes"):
        rows, columns = int(ds.Rows), int(ds.Columns)
        samples = int(ds.get("SamplesPerPixel") or 1)
        bits_allocated = int(ds.BitsAllocated)
        pixel_data = bytes(ds.PixelData)
    frame_bits = rows * columns * samples * bits_allocated
    if len(pixel_data) * 8 < frame_bits * frames:
        raise RenderError("pixel data is shorter than the image attributes describe")
    if frame_bits % 8 == 0:
        size = frame_bits // 8
        return [pixel_data[i * size : (i + 1) * size] for i in range(frames)]
    # 1-bit frames need not start on a byte boundary: unpack, split and repack each one.
    bits = np.unpackbits(np.frombuffer(pixel_data, dtype=np.uint8), bitorder="little")
    return [
        np.packbits(bits[i * frame_bits : (i + 1) * frame_bits], bitorder="little").tobytes() for i in range(frames)
    ]


def _encapsulated_frames(ds: Dataset, frames: int) -> list[bytes]:
    offsets = None
    if "ExtendedOffsetTable" in ds and "ExtendedOffsetTableLengths" in ds:
        offsets = (ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths)
    with _guard("read encapsulated pixel data"):
        result = list(generate_frames(ds.PixelData, number_of_frames=frames, extended_offsets=offsets))
    if len(result) != frames:
        raise RenderError("encapsulated pixel data does not match the number of frames")
    return result


def raw_frames(data: bytes) -> list[bytes]:
    """Each frame's pixel data as stored: a byte slice (native syntaxes) or the encapsulated frame (compressed)."""
    ds = _read(data)
    frames = _require_pixels(ds)
    syntax = _syntax(ds)
    with _guard("inspect the transfer syntax"):
        encapsulated = syntax.is_encapsulated
    return _encapsulated_frames(ds, frames) if encapsulated else _native_frames(ds, frames)


# ----------------------------------------------------------------------------------------------------- transcode


def _swap_to_little_endian(ds: Dataset) -> None:
    """Byte-swap the binary values pydicom leaves as raw big-endian bytes (OW/OF/OL/OD/OV, incl. PixelData)."""
    bits_allocated = int(ds.get("BitsAllocated") or 0)
    for elem in ds.iterall():
        width = _SWAP_WIDTHS.get(str(elem.VR))
        if elem.tag == 0x7FE00010 and bits_allocated > 16:
            width = bits_allocated // 8
        if width is None or not isinstance(elem.value, bytes | bytearray):
            continue
        value = bytes(elem.value)
        usable = len(value) - len(value) % width
        swapped = np.frombuffer(value[:usable], dtype=f">u{width}").astype(f"<u{width}").tobytes()
        elem.value = swapped + value[usable:]


def transcode(data: bytes, transfer_syntax_uid: str) -> bytes:
    """A Part-10 file in ``transfer_syntax_uid`` (one of ``TRANSCODE_TARGETS``); the same bytes for the stored one."""
    ds = _read(data)
    source = _syntax(ds)
    if transfer_syntax_uid == source:
        return data
    if transfer_syntax_uid not in TRANSCODE_TARGETS:
        raise RenderError(f"transcoding to {transfer_syntax_uid} is not supported")
    with _guard("decode pixel data"):
        if source.is_encapsulated:
            if "PixelData" not in ds:
                raise RenderError("encapsulated syntax without pixel data")
            # pydicom 3 would otherwise give the instance a new SOPInstanceUID.
            ds.decompress(generate_instance_uid=False)
        elif not source.is_little_endian:
            _swap_to_little_endian(ds)
    ds.file_meta.TransferSyntaxUID = UID(EXPLICIT_VR_LITTLE_ENDIAN)
    if transfer_syntax_uid in COMPRESSED_TARGETS:
        if "PixelData" not in ds:
            raise RenderError(f"{transfer_syntax_uid} needs pixel data; the instance has none")
        with _guard(f"encode pixel data in {transfer_syntax_uid}"):
            try:
                compress(ds, transfer_syntax_uid)
            except TranscodeError as exc:
                raise RenderError(str(exc)) from exc
    with _guard("encode the DICOM file"):
        return write(ds, transfer_syntax_uid)


# ---------------------------------------------------------------------------------------------------- MIME types


def parse_mime_type(mime_type: str) -> tuple[str, dict[str, str]]:
    """``'application/dicom; transfer-syntax=1.2.3'`` -> ``('application/dicom', {'transfer-syntax': '1.2.3'})``."""
    base, _, rest = mime_type.partition(";")
    parameters: dict[str, str] = {}
    for match in _PARAMETER.finditer(";" + rest):
        name, value = match.group(1).lower(), match.group(2).strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        parameters[name] = value
    return base.strip().lower(), parameters


def mime_extension(mime_type: str) -> str:
    """File extension for an export mimeType; ValueError for a type the emulator cannot export."""
    base, _ = parse_mime_type(mime_type)
    try:
        return _EXTENSIONS[base]
    except KeyError:
        raise ValueError(f"unsupported MIME type {mime_type!r}") from None

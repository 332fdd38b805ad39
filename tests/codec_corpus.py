"""One Part-10 instance per transfer syntax real archives hold, for the emulator's codec tests.

Compressed instances are encoded here with pydicom's encoders (RLE, JPEG-LS and JPEG 2000 through the plugins);
the syntaxes no open encoder writes (JPEG baseline, extended, lossless SV1, deflated, big endian) come from the
test files bundled with pydicom, and HTJ2K from codestreams OpenJPH wrote once (tests/data/htj2k/make.py).
Each instance gets fresh UIDs so that all of them fit in one store.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    HTJ2K,
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

ROWS, COLUMNS = 64, 48  # JPEG 2000 needs at least 32 pixels a side for its default 6 resolutions
HTJ2K_DIR = Path(__file__).parent / "data" / "htj2k"
HT_FRAMES = ["lossless-u16-frame0.j2c", "lossless-u16-frame1.j2c"]


@dataclass(frozen=True)
class CodecSample:
    """A stored instance: its name in test ids, syntax, bytes and UIDs."""

    name: str
    syntax: str
    data: bytes
    study_uid: str
    series_uid: str
    sop_uid: str
    frames: int


def _write(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def signed_ramp(frames: int = 2) -> npt.NDArray[np.int16]:
    """Signed 16-bit frames spanning negative and positive values (CT-like)."""
    base = np.arange(ROWS * COLUMNS, dtype=np.int32).reshape(ROWS, COLUMNS) * 9 - 12000
    return np.stack([(base + 100 * n).astype(np.int16) for n in range(frames)])


def rgb_image() -> npt.NDArray[np.uint8]:
    y, x = np.mgrid[0:ROWS, 0:COLUMNS]
    return np.stack([x * 5, y * 4, (x + y) * 2], axis=-1).astype(np.uint8)


def htj2k_unsigned16() -> npt.NDArray[np.uint16]:
    """The two 16-bit unsigned frames of the HTJ2K lossless samples (MR-like)."""
    base = np.arange(ROWS * COLUMNS, dtype=np.int64).reshape(ROWS, COLUMNS) * 13
    return np.stack([(base + 500 * n).astype(np.uint16) for n in range(2)])


def htj2k_grey8() -> npt.NDArray[np.uint8]:
    """The 8-bit picture of the lossy HTJ2K sample."""
    y, x = np.mgrid[0:ROWS, 0:COLUMNS]
    grey: npt.NDArray[np.uint8] = ((x * 5 + y * 3) % 256).astype(np.uint8)
    return grey


def _native(pixels: npt.NDArray[np.generic], photometric: str, signed: bool) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = UID(ExplicitVRLittleEndian)
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.PatientName = "Codec^Test"
    ds.PatientID = "CODEC"
    ds.Modality = "OT"
    colour = photometric == "RGB"
    frames = pixels.shape[0] if not colour else 1
    ds.Rows, ds.Columns = ROWS, COLUMNS
    ds.SamplesPerPixel = 3 if colour else 1
    ds.PhotometricInterpretation = photometric
    if colour:
        ds.PlanarConfiguration = 0
    bits = 8 * pixels.dtype.itemsize
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits, bits - 1
    ds.PixelRepresentation = 1 if signed else 0
    if frames > 1:
        ds.NumberOfFrames = frames
    if signed:
        ds.WindowCenter, ds.WindowWidth = 0, 2000
    ds.PixelData = pixels.tobytes()
    return ds


def _with_fresh_uids(ds: Dataset) -> tuple[Dataset, str, str, str]:
    study, series, sop = generate_uid(), generate_uid(), generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study, series, sop
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    if "SOPClassUID" not in ds:
        ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    return ds, study, series, sop


def _sample(name: str, ds: Dataset) -> CodecSample:
    ds, study, series, sop = _with_fresh_uids(ds)
    frames = int(ds.get("NumberOfFrames") or 1)
    return CodecSample(name, str(ds.file_meta.TransferSyntaxUID), _write(ds), study, series, sop, frames)


def _encoded(
    name: str, syntax: str, pixels: npt.NDArray[np.generic], photometric: str, **options: object
) -> CodecSample:
    ds = _native(pixels, photometric, signed=pixels.dtype.kind == "i")
    if syntax in (ImplicitVRLittleEndian, ExplicitVRLittleEndian):
        ds.file_meta.TransferSyntaxUID = UID(syntax)
    else:
        ds.compress(syntax, generate_instance_uid=False, **options)  # type: ignore[arg-type]
    return _sample(name, ds)


def _htj2k(name: str, syntax: str, pixels: npt.NDArray[np.generic], codestreams: list[str]) -> CodecSample:
    """The native data set of ``pixels`` with OpenJPH's codestreams (one a frame) as its encapsulated pixel data."""
    ds = _native(pixels, "MONOCHROME2", signed=False)
    ds.file_meta.TransferSyntaxUID = UID(syntax)
    ds.PixelData = encapsulate([(HTJ2K_DIR / name).read_bytes() for name in codestreams])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    return _sample(name, ds)


def _bundled(name: str, filename: str) -> CodecSample:
    path = get_testdata_file(filename)
    assert path is not None, f"pydicom's bundled test file {filename} is missing"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path)
    return _sample(name, ds)


def _relabelled(name: str, filename: str, syntax: str) -> CodecSample:
    """A bundled file under a syntax its bitstream also conforms to (SV1 is one of process 14's predictors)."""
    sample = _bundled(name, filename)
    ds = _dataset_of(sample.data)
    ds.file_meta.TransferSyntaxUID = UID(syntax)
    return CodecSample(name, syntax, _write(ds), sample.study_uid, sample.series_uid, sample.sop_uid, sample.frames)


def _dataset_of(data: bytes) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(io.BytesIO(data))


def codec_samples() -> list[CodecSample]:
    """One instance per transfer syntax (and the colour models: RGB, YBR, palette; signed 16-bit greyscale)."""
    signed, rgb = signed_ramp(), rgb_image()
    return [
        _encoded("explicit-le-signed16", ExplicitVRLittleEndian, signed, "MONOCHROME2"),
        _encoded("implicit-le-signed16", ImplicitVRLittleEndian, signed, "MONOCHROME2"),
        _bundled("explicit-be", "MR_small_bigendian.dcm"),
        _bundled("deflated-le", "image_dfl.dcm"),
        _encoded("rle-signed16", RLELossless, signed, "MONOCHROME2"),
        _encoded("rle-rgb", RLELossless, rgb[np.newaxis], "RGB"),
        _encoded("jpegls-lossless-signed16", JPEGLSLossless, signed, "MONOCHROME2"),
        _encoded("jpegls-near-rgb", JPEGLSNearLossless, rgb[np.newaxis], "RGB", jls_error=2),
        _encoded("j2k-lossless-signed16", JPEG2000Lossless, signed, "MONOCHROME2"),
        _encoded("j2k-lossless-rgb", JPEG2000Lossless, rgb[np.newaxis], "RGB"),
        _encoded("j2k-lossy-signed16", JPEG2000, signed, "MONOCHROME2", j2k_cr=[5]),
        _bundled("jpeg-baseline-ybr422", "SC_rgb_dcmtk_+eb+cy+np.dcm"),
        _bundled("jpeg-extended-12bit", "JPGExtended.dcm"),
        _bundled("jpeg-lossless-sv1", "SC_rgb_jpeg_gdcm.dcm"),
        _relabelled("jpeg-lossless-p14", "SC_rgb_jpeg_gdcm.dcm", JPEGLossless),
        _htj2k("htj2k-lossless-u16", HTJ2KLossless, htj2k_unsigned16(), HT_FRAMES),
        _htj2k("htj2k-lossless-rpcl-u16", HTJ2KLosslessRPCL, htj2k_unsigned16(), HT_FRAMES),  # OpenJPH's order: RPCL
        _htj2k("htj2k-lossy-u8", HTJ2K, htj2k_grey8()[np.newaxis], ["lossy-u8.j2c"]),
        _bundled("palette-colour", "examples_palette.dcm"),
        _bundled("ybr-full-multiframe", "examples_ybr_color.dcm"),
    ]


ALL_SYNTAXES = {
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    ExplicitVRBigEndian,
    DeflatedExplicitVRLittleEndian,
    RLELossless,
    JPEGLSLossless,
    JPEGLSNearLossless,
    JPEG2000Lossless,
    JPEG2000,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    HTJ2K,
}
LOSSY = {JPEGLSNearLossless, JPEG2000, JPEGBaseline8Bit, JPEGExtended12Bit, HTJ2K}


def decoded(data: bytes) -> npt.NDArray[np.float64]:
    """The pixel data of a Part-10 file as float (RGB for colour), for comparisons across syntaxes."""
    return np.asarray(_dataset_of(data).pixel_array, dtype=np.float64)

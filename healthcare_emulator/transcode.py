"""Transcode a Part-10 file to another transfer syntax: decode with pydicom's plugins, re-encode with their encoders.

Targets are the syntaxes the Healthcare API's DICOM conformance statement lists for retrieval and export: the
native little-endian ones (written by pydicom), JPEG 2000 lossless and lossy (pylibjpeg-openjpeg's encoder) and
JPEG Baseline (8-bit frames encoded by Pillow, then encapsulated).
"""

from __future__ import annotations

from io import BytesIO

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.pixels.utils import iter_pixels
from pydicom.uid import UID

IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1.99"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_2000_LOSSLESS = "1.2.840.10008.1.2.4.90"
JPEG_2000 = "1.2.840.10008.1.2.4.91"

NATIVE_TARGETS = (IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN, DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN)
COMPRESSED_TARGETS = (JPEG_BASELINE, JPEG_2000_LOSSLESS, JPEG_2000)
TRANSCODE_TARGETS = NATIVE_TARGETS + COMPRESSED_TARGETS
"""Every transfer syntax :func:`compress` and :func:`write` produce; render.transcode refuses any other up front."""

JPEG_QUALITY = 90
J2K_COMPRESSION_RATIO = 10.0  # lossy JPEG 2000: 10:1


class TranscodeError(Exception):
    """The instance cannot be written in the requested syntax; the message names the reason, never tag values."""


def _jpeg_baseline(ds: Dataset) -> None:
    """Encode each (8-bit, 1 or 3 sample) frame with Pillow and encapsulate the frames (PS3.5 A.4.1)."""
    if int(ds.BitsAllocated) != 8 or int(ds.get("SamplesPerPixel") or 1) not in (1, 3):
        raise TranscodeError("JPEG Baseline holds only 8-bit greyscale or 3-sample colour images")
    colour = int(ds.get("SamplesPerPixel") or 1) == 3
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if photometric not in (("RGB",) if colour else ("MONOCHROME1", "MONOCHROME2")):
        raise TranscodeError(f"JPEG Baseline cannot hold {photometric or 'unlabelled'} pixel data lossily")
    frames = []
    for arr in iter_pixels(ds, as_rgb=False):
        buffer = BytesIO()
        # subsampling=1 is 4:2:2, the YBR_FULL_422 the encapsulated colour frames are labelled with.
        Image.fromarray(np.ascontiguousarray(arr.astype(np.uint8))).save(
            buffer, format="JPEG", quality=JPEG_QUALITY, subsampling=1 if colour else 0
        )
        frames.append(buffer.getvalue())
    ds.PixelData = encapsulate(frames)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    if colour:
        ds.PhotometricInterpretation = "YBR_FULL_422"
        ds.PlanarConfiguration = 0
    ds.LossyImageCompression = "01"
    ds.file_meta.TransferSyntaxUID = UID(JPEG_BASELINE)


def compress(ds: Dataset, target: str) -> None:
    """Re-encode the native little-endian pixel data of ``ds`` in place into the compressed ``target``."""
    if target == JPEG_BASELINE:
        _jpeg_baseline(ds)
        return
    ratio = [J2K_COMPRESSION_RATIO] if target == JPEG_2000 else None
    # pydicom 3 would otherwise give the instance a new SOPInstanceUID.
    ds.compress(target, generate_instance_uid=False, j2k_cr=ratio)
    if target == JPEG_2000:
        ds.LossyImageCompression = "01"


def write(ds: Dataset, target: str) -> bytes:
    """The Part-10 bytes of ``ds`` with ``target`` as its transfer syntax (native or already encapsulated)."""
    ds.file_meta.TransferSyntaxUID = UID(target)
    buffer = BytesIO()
    implicit = target == IMPLICIT_VR_LITTLE_ENDIAN
    # pydicom.dcmwrite rather than save_as: save_as refuses to change the byte order or the VR encoding.
    pydicom.dcmwrite(buffer, ds, implicit_vr=implicit, little_endian=True, enforce_file_format=True)
    return buffer.getvalue()

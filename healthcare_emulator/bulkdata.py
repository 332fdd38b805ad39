"""Bulk data: the ``BulkDataURI`` of metadata made absolute, and the bytes a bulkdata URI names.

Metadata (PS3.18 F.2.6) refers to the pixel data and to binary values over 1 KiB by URI instead of inlining
them; RetrieveBulkdata (PS3.18 10.4, the API's ``bulkdata.retrieveBulkdata``) returns the value as
uncompressed little-endian bytes.
"""

from __future__ import annotations

import copy
import re
from io import BytesIO
from typing import Any

import pydicom
from pydicom.dataset import Dataset

from healthcare_emulator.qido import BULKDATA_PREFIX
from healthcare_emulator.render import RenderError, transcode
from healthcare_emulator.transcode import EXPLICIT_VR_LITTLE_ENDIAN

_TAG = re.compile(r"[0-9A-Fa-f]{8}")


class BulkdataNotFoundError(Exception):
    """The path names no bulk data element of the instance; the message says which part is wrong."""


def absolute(metadata: dict[str, Any], instance_url: str) -> dict[str, Any]:
    """A copy of ``metadata`` whose ``BulkDataURI`` values are absolute (``{instance_url}/bulkdata/...``)."""
    result = copy.deepcopy(metadata)
    _rewrite(result, instance_url.rstrip("/"))
    return result


def _rewrite(metadata: dict[str, Any], base: str) -> None:
    for element in metadata.values():
        uri = element.get("BulkDataURI")
        if isinstance(uri, str) and uri.startswith(BULKDATA_PREFIX):
            element["BulkDataURI"] = f"{base}/{uri}"
        for item in element.get("Value") or [] if element.get("vr") == "SQ" else []:
            if isinstance(item, dict):
                _rewrite(item, base)


def element_bytes(data: bytes, path: str) -> bytes:
    """The value named by ``path`` (``TAG`` or ``SEQ/ITEM/.../TAG``) as uncompressed little-endian bytes."""
    parts = [part for part in path.strip("/").split("/") if part]
    if not parts or len(parts) % 2 == 0:
        raise BulkdataNotFoundError(f"bulkdata path {path!r} must be TAG or SEQTAG/ITEM/.../TAG")
    try:
        dataset: Dataset = pydicom.dcmread(BytesIO(transcode(data, EXPLICIT_VR_LITTLE_ENDIAN)))
    except RenderError as exc:
        raise BulkdataNotFoundError(f"cannot read the instance's bulk data: {exc}") from exc
    for number, part in enumerate(parts):
        if number % 2 == 0:
            if not _TAG.fullmatch(part) or int(part, 16) not in dataset:
                raise BulkdataNotFoundError(f"bulkdata path {path!r}: no element {part}")
            element = dataset[int(part, 16)]
            if number == len(parts) - 1:
                value = element.value
                if not isinstance(value, bytes | bytearray):
                    raise BulkdataNotFoundError(f"bulkdata path {path!r}: element {part} is not binary")
                return bytes(value)
            if element.VR != "SQ":
                raise BulkdataNotFoundError(f"bulkdata path {path!r}: element {part} is not a sequence")
        else:
            items = dataset[int(parts[number - 1], 16)].value
            if not part.isdigit() or int(part) >= len(items):
                raise BulkdataNotFoundError(f"bulkdata path {path!r}: no item {part}")
            dataset = items[int(part)]
    raise BulkdataNotFoundError(f"bulkdata path {path!r} names no element")  # pragma: no cover

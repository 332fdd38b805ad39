"""De-identification of one DICOM instance (``DeidentifyConfig.dicom``): tag filtering and UID replacement.

A documented subset of the API's DicomConfig
(https://cloud.google.com/healthcare-api/docs/reference/rest/v1/DeidentifyConfig#DicomConfig):

- one tag filter (the API's ``oneof``): ``keepList`` (keep these tags, remove all others), ``removeList``
  (remove these, keep the others) or ``filterProfile``:
  ``MINIMAL_KEEP_LIST_PROFILE`` (what the instance's IOD requires, de-identified) and
  ``ATTRIBUTE_CONFIDENTIALITY_BASIC_PROFILE`` (PS3.15 Table E.1-1), both from the standard's tables (see
  :mod:`deid_profile`), and ``KEEP_ALL_PROFILE``; ``DEIDENTIFY_TAG_CONTENTS`` (inspecting text with Cloud
  DLP) is not emulated;
- a keep list also keeps the technical minimum (:data:`ALWAYS_KEPT`: UIDs, SOP class, the image pixel module
  and pixel data), so the result stays a storable, viewable instance;
- UIDs (every UI value that is not a registered DICOM UID: Study, Series, SOP Instance, Frame of Reference,
  referenced instances...) are replaced by ``2.25.<decimal>`` derived from the original and a salt, so one
  original UID always maps to one new UID: studies and series keep their structure and references stay
  consistent. ``skipIdRedaction: true`` leaves every UID untouched.

Pixel data is never redacted (``config.image`` redaction is not emulated). Nothing here logs a tag value.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from io import BytesIO
from typing import Any

import pydicom
from pydicom._uid_dict import UID_dictionary
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.uid import UID

from healthcare_emulator.deid_profile import basic_profile, minimal_keep_list

PROFILES = (
    "MINIMAL_KEEP_LIST_PROFILE",
    "ATTRIBUTE_CONFIDENTIALITY_BASIC_PROFILE",
    "KEEP_ALL_PROFILE",
)
# No config, or TAG_FILTER_PROFILE_UNSPECIFIED: "Same as KEEP_ALL_PROFILE" (v1 DicomConfig.filterProfile reference)
DEFAULT_PROFILE = "KEEP_ALL_PROFILE"


def _tags(*keywords: str) -> frozenset[int]:
    found = {tag_for_keyword(keyword) for keyword in keywords}
    assert None not in found, keywords
    return frozenset(tag for tag in found if tag is not None)


ALWAYS_KEPT = _tags(
    "SpecificCharacterSet", "SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID",
    "Modality", "ImageType", "SeriesNumber", "InstanceNumber", "FrameOfReferenceUID",
)  # fmt: skip
# Group 0028 (image presentation: rows, columns, bits, photometric interpretation, LUTs) and 7FE0 (pixel data)
_ALWAYS_KEPT_GROUPS = (0x0028, 0x7FE0)

# Removing these would leave an instance no store accepts.
_NOT_REMOVABLE = _tags("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")


class DeidentifyConfigError(ValueError):
    """The DicomConfig is invalid or asks for what the emulator does not do; the message says which."""

    def __init__(self, message: str, *, unimplemented: bool = False) -> None:
        super().__init__(message)
        self.unimplemented = unimplemented


@dataclass(frozen=True)
class DicomDeidConfig:
    """A parsed ``DeidentifyConfig.dicom``: exactly one way of filtering tags, and the UID switch."""

    profile: str | None = DEFAULT_PROFILE
    keep: frozenset[int] | None = None
    remove: frozenset[int] | None = None
    skip_id_redaction: bool = False


def parse_config(config: Any) -> DicomDeidConfig:
    """Parse a DeidentifyConfig (its ``dicom`` part); DeidentifyConfigError naming what is wrong."""
    if config in (None, {}):
        return DicomDeidConfig()
    if not isinstance(config, dict):
        raise DeidentifyConfigError("config must be an object")
    image = config.get("image") or {}
    if isinstance(image, dict) and image.get("textRedactionMode") not in (None, "", "REDACT_NO_TEXT"):
        raise DeidentifyConfigError(
            f"config.image.textRedactionMode {image.get('textRedactionMode')} (pixel redaction) is not emulated",
            unimplemented=True,
        )
    dicom = config.get("dicom") or {}
    if not isinstance(dicom, dict):
        raise DeidentifyConfigError("config.dicom must be an object")
    chosen = [key for key in ("keepList", "removeList", "filterProfile") if dicom.get(key)]
    if len(chosen) > 1:
        raise DeidentifyConfigError(f"config.dicom takes one of keepList, removeList, filterProfile, not {chosen}")
    skip = bool(dicom.get("skipIdRedaction"))
    if "keepList" in chosen:
        return DicomDeidConfig(None, keep=_tag_list(dicom["keepList"], "keepList"), skip_id_redaction=skip)
    if "removeList" in chosen:
        remove = _tag_list(dicom["removeList"], "removeList")
        blocked = sorted(f"{tag:08X}" for tag in remove & _NOT_REMOVABLE)
        if blocked:
            raise DeidentifyConfigError(f"config.dicom.removeList cannot remove {', '.join(blocked)}")
        return DicomDeidConfig(None, remove=remove, skip_id_redaction=skip)
    profile = str(dicom.get("filterProfile") or "TAG_FILTER_PROFILE_UNSPECIFIED")
    if profile == "TAG_FILTER_PROFILE_UNSPECIFIED":
        profile = DEFAULT_PROFILE
    if profile == "DEIDENTIFY_TAG_CONTENTS":
        raise DeidentifyConfigError(
            "filterProfile DEIDENTIFY_TAG_CONTENTS (inspecting tag text with Cloud DLP) is not emulated",
            unimplemented=True,
        )
    if profile not in PROFILES:
        raise DeidentifyConfigError(f"unknown config.dicom.filterProfile {profile!r}")
    return DicomDeidConfig(profile, skip_id_redaction=skip)


def _tag_list(value: Any, field: str) -> frozenset[int]:
    tags = value.get("tags") if isinstance(value, dict) else None
    if not isinstance(tags, list) or not tags:
        raise DeidentifyConfigError(f"config.dicom.{field}.tags must be a non-empty list")
    parsed: set[int] = set()
    for tag in tags:
        text = str(tag).strip()
        if len(text) == 8 and all(char in "0123456789abcdefABCDEF" for char in text):
            parsed.add(int(text, 16))
            continue
        number = tag_for_keyword(text)
        if number is None:
            raise DeidentifyConfigError(f"config.dicom.{field}: {text!r} is not a DICOM keyword or tag")
        parsed.add(number)
    return frozenset(parsed)


def uid_mapper(salt: str) -> Callable[[str], str]:
    """Original UID -> ``2.25.<128-bit decimal>``, the same for the same original and salt."""

    def new_uid(original: str) -> str:
        digest = hashlib.sha256(f"{salt}\0{original}".encode()).digest()
        return f"2.25.{int.from_bytes(digest[:16], 'big')}"

    return new_uid


def deidentify_instance(data: bytes, config: DicomDeidConfig, new_uid: Callable[[str], str]) -> bytes:
    """The de-identified Part-10 file of ``data`` (same transfer syntax, pixel data untouched)."""
    dataset = pydicom.dcmread(BytesIO(data))
    _filter(dataset, config, new_uid)
    if not config.skip_id_redaction:
        _replace_uids(dataset, new_uid)
        media = dataset.file_meta.get("MediaStorageSOPInstanceUID")
        if media:
            dataset.file_meta.MediaStorageSOPInstanceUID = UID(new_uid(str(media)))
    buffer = BytesIO()
    pydicom.dcmwrite(buffer, dataset, enforce_file_format=True)
    return buffer.getvalue()


def _kept(tag: int) -> bool:
    return tag in ALWAYS_KEPT or (tag >> 16) in _ALWAYS_KEPT_GROUPS


def _filter(dataset: Dataset, config: DicomDeidConfig, new_uid: Callable[[str], str]) -> None:
    if config.keep is not None:
        for tag in [element.tag for element in dataset if not (_kept(element.tag) or element.tag in config.keep)]:
            del dataset[tag]
    elif config.remove is not None:
        for tag in [element.tag for element in dataset if element.tag in config.remove]:
            del dataset[tag]
    elif config.profile == "MINIMAL_KEEP_LIST_PROFILE":
        minimal_keep_list(dataset, new_uid)
    elif config.profile == "ATTRIBUTE_CONFIDENTIALITY_BASIC_PROFILE":
        basic_profile(dataset, new_uid)


def _replace_uids(dataset: Dataset, new_uid: Callable[[str], str]) -> None:
    for element in dataset:
        if element.VR == "SQ":
            for item in element.value or []:
                _replace_uids(item, new_uid)
        elif element.VR == "UI" and element.value:
            values = element.value if isinstance(element.value, list | pydicom.multival.MultiValue) else [element.value]
            replaced = [str(value) if str(value) in UID_dictionary else new_uid(str(value)) for value in values]
            element.value = replaced if len(replaced) > 1 else replaced[0]

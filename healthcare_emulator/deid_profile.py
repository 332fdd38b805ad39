"""The two standard-based tag profiles of ``DicomConfig.filterProfile``, applied to one pydicom Dataset.

- ``ATTRIBUTE_CONFIDENTIALITY_BASIC_PROFILE``: every attribute of PS3.15 Table E.1-1 (:mod:`deid_table`) gets
  its action, in nested sequence items too; private attributes are removed; unlisted ones are kept (K).
  D puts a dummy value of the attribute's VR, Z empties, X removes; U is left to the caller's UID
  replacement (so ``skipIdRedaction`` keeps every UID). A combined code takes the first choice the instance's
  IOD allows (:mod:`deid_iods`): X unless the attribute is Type 2 (then Z) or Type 1 (then D, or U* for a
  sequence of references); inside a sequence, where the types are not looked up, the first choice.
- ``MINIMAL_KEEP_LIST_PROFILE``: the API documents it only as keeping the tags required to produce valid
  DICOM (DicomConfig.filterProfile, v1 reference). Here: the Type 1/1C and 2/2C top-level attributes of the
  Mandatory and Conditional modules of the instance's IOD (PS3.3) are kept and everything else is removed;
  what is kept then goes through the Basic Profile, so a required Type 2 attribute that identifies (the
  patient's name, the study date) stays present but empty. An unknown SOP class keeps what every composite
  IOD requires (patient, study, series, equipment, SOP common, image pixel modules).

Nothing is added: Google's documentation does not say the API sets PatientIdentityRemoved (0012,0062) or
DeidentificationMethod (0012,0063), so the emulator does not either.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from healthcare_emulator.deid_iods import MODULES, SOP_CLASS_MODULES
from healthcare_emulator.deid_table import BASIC_PROFILE, BASIC_PROFILE_MASKED

_COMMON_MODULES = ("patient", "general-study", "general-series", "general-equipment", "sop-common", "image-pixel")
_TEXT_DUMMY = "ANONYMIZED"
_DUMMIES: dict[str, Any] = {
    "DA": "19000101",
    "DT": "19000101000000",
    "TM": "000000",
    "AS": "000D",
    "DS": "0",
    "IS": "0",
    "UR": "urn:anonymized",
    **dict.fromkeys(("US", "SS", "UL", "SL", "UV", "SV", "AT"), 0),
    **dict.fromkeys(("FL", "FD"), 0.0),
    **dict.fromkeys(("OB", "OW", "OD", "OF", "OL", "OV", "UN"), b"\x00" * 8),
}


def action(tag: int) -> str | None:
    """The Basic Profile's action code for ``tag`` (None: not in Table E.1-1, kept)."""
    code = BASIC_PROFILE.get(tag)
    if code is None:
        code = next((c for base, mask, c in BASIC_PROFILE_MASKED if tag & mask == base), None)
    return code


def resolve(code: str, kind: str | None) -> str:
    """One action of a combined code, for an attribute of Type ``kind`` ("1", "2" or None: optional/unknown)."""
    choices = code.split("/")
    if len(choices) == 1:
        return code
    if kind == "1":
        return next((c for c in ("D", "U*") if c in choices), choices[-1])
    if kind == "2" and "Z" in choices:
        return "Z"
    return choices[0]


@lru_cache(maxsize=256)
def required_types(sop_class: str) -> dict[int, str]:
    """Tag -> "1" or "2" for the top-level attributes the IOD of ``sop_class`` requires."""
    types: dict[int, str] = {}
    for module in SOP_CLASS_MODULES.get(sop_class, _COMMON_MODULES):
        for keyword, kind in MODULES[module].items():
            tag = tag_for_keyword(keyword)
            if tag is not None:
                types[tag] = min(types.get(tag, "3"), kind)
    return types


def basic_profile(dataset: Dataset, new_uid: Callable[[str], str]) -> None:
    """Apply Table E.1-1 to ``dataset`` in place (private attributes removed)."""
    dataset.remove_private_tags()
    _apply(dataset, required_types(str(dataset.get("SOPClassUID", ""))), new_uid)


def minimal_keep_list(dataset: Dataset, new_uid: Callable[[str], str]) -> None:
    """Keep only what the IOD requires (see the module docstring), de-identified by the Basic Profile."""
    required = required_types(str(dataset.get("SOPClassUID", "")))
    for tag in [element.tag for element in dataset if element.tag not in required]:
        del dataset[tag]
    basic_profile(dataset, new_uid)


def _apply(dataset: Dataset, types: dict[int, str], new_uid: Callable[[str], str]) -> None:
    for element in list(dataset):
        code = action(element.tag)
        chosen = "K" if code is None else resolve(code, types.get(element.tag))
        if chosen == "X":
            del dataset[element.tag]
        elif chosen == "Z":
            element.value = [] if element.VR == "SQ" else None
        elif chosen == "D" and element.VR != "SQ":
            _dummy(element, new_uid)
        elif element.VR == "SQ":  # K, U*, or D of a sequence: its items are de-identified in turn
            for item in element.value or []:
                _apply(item, {}, new_uid)


def _dummy(element: DataElement, new_uid: Callable[[str], str]) -> None:
    if element.VR == "UI":
        element.value = new_uid(str(element.value)) if not element.is_empty else new_uid(f"{element.tag:08X}")
    else:
        element.value = _DUMMIES.get(element.VR, _TEXT_DUMMY)

"""The emulator's profiles checked against the standard's own tables, not against the implementation.

``healthcare_emulator.deid_table`` is PS3.15 Table E.1-1 (Basic Profile column) and ``deid_iods`` the PS3.3
attribute types, both generated from the libraries that carry the standard (scripts/generate_deid_tables.py).
Each test reads a table, builds an instance holding a value for a sample of its rows, de-identifies it and
checks every attribute's fate against what the row says.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from typing import Any

import pydicom
import pytest
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import UID

from devstack.synthetic import generate_dataset
from healthcare_emulator.deid_iods import MODULES, SOP_CLASS_MODULES
from healthcare_emulator.deid_table import BASIC_PROFILE, BASIC_PROFILE_MASKED
from healthcare_emulator.deidentify import deidentify_instance, parse_config, uid_mapper

BASIC = {"dicom": {"filterProfile": "ATTRIBUTE_CONFIDENTIALITY_BASIC_PROFILE"}}
MINIMAL = {"dicom": {"filterProfile": "MINIMAL_KEEP_LIST_PROFILE"}}
# What each action code of Table E.1-1 allows to become of an attribute that holds a value
ALLOWED = {
    "X": {"removed"},
    "Z": {"empty"},
    "D": {"replaced"},
    "U": {"replaced"},
    "Z/D": {"empty", "replaced"},
    "X/Z": {"removed", "empty"},
    "X/D": {"removed", "replaced"},
    "X/Z/D": {"removed", "empty", "replaced"},
    "X/Z/U*": {"removed", "empty", "replaced"},
}
SAMPLES_PER_CODE = 8
_TEXT_VRS = {"LO", "SH", "LT", "ST", "UT", "UC", "PN"}
_PRIVATE_CREATOR, _PRIVATE_VALUE = 0x00090010, 0x00091010
_NOT_IN_A_FILE = (0x0000, 0x0002)
_KEPT_SEQUENCE = 0x00082218  # AnatomicRegionSequence: not in Table E.1-1, so K


def _value(tag: int, vr: str) -> Any:
    """A value of ``vr`` unique to ``tag`` (so a leak can be traced back to its attribute)."""
    text = f"ORIG{tag:08X}"
    values: dict[str, Any] = {
        "PN": f"DOE^{text}",
        "CS": text,
        "AE": text,
        "DA": "20200102",
        "TM": "101112",
        "DT": "20200102101112",
        "AS": "042Y",
        "IS": "7",
        "DS": "7.5",
        "UI": f"1.2.826.0.1.3680043.10.999.{tag}",
        "US": 7,
        "UL": 7,
        "SS": 7,
        "SL": 7,
        "FL": 7.5,
        "FD": 7.5,
        "OB": b"\x01\x02",
        "OW": b"\x01\x02",
        "UN": b"\x01\x02",
        "UR": f"http://example.org/{text}",
    }
    return values.get(vr, text if vr in _TEXT_VRS else None)


def _vr(tag: int) -> str | None:
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return None


def _item(tag: int) -> Dataset:
    """A sequence item with an attribute to remove (X), one to keep (K) and a UID reference."""
    item = Dataset()
    item.OtherPatientIDs = f"ORIG{tag:08X}-ITEM"
    item.CodeValue = "KEPT-CODE"
    item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    item.ReferencedSOPInstanceUID = f"1.2.826.0.1.3680043.10.998.{tag}"
    return item


def _element(tag: int) -> DataElement | None:
    vr = _vr(tag)
    if vr == "SQ":
        return DataElement(tag, "SQ", Sequence([_item(tag)]))
    if vr is None or (value := _value(tag, vr)) is None:
        return None
    return DataElement(tag, vr, value)


def _samples(base: Dataset) -> dict[str, list[int]]:
    """Up to SAMPLES_PER_CODE attributes of each action code that can hold a value (and the base's own)."""
    chosen: dict[str, list[int]] = {code: [] for code in ALLOWED}
    for tag, code in sorted(BASIC_PROFILE.items()):
        if tag >> 16 in _NOT_IN_A_FILE or tag == 0xFFFCFFFC or _element(tag) is None:  # command, meta, padding
            continue
        if tag in base or len(chosen[code]) < SAMPLES_PER_CODE:
            chosen[code].append(tag)
    return chosen


def _instance(samples: dict[str, list[int]]) -> tuple[bytes, Dataset]:
    """The synthetic CT plus every sampled attribute, top level and in a kept sequence, and private tags."""
    dataset = pydicom.dcmread(io.BytesIO(generate_dataset(1, 1, 1, seed=3101)[0].data))
    nested = Dataset()
    for tag in (tag for tags in samples.values() for tag in tags):
        element = _element(tag)
        assert element is not None
        if tag not in dataset:
            dataset.add(element)
        if _vr(tag) != "SQ" and tag not in nested:
            nested.add(DataElement(tag, element.VR, element.value))
    nested.CodeValue = "KEPT-CODE"
    nested.add_new(_PRIVATE_CREATOR, "LO", "SYNTH CREATOR")
    nested.add_new(_PRIVATE_VALUE, "LO", "PRIVATE NESTED")
    dataset.add_new(_KEPT_SEQUENCE, "SQ", Sequence([nested]))
    dataset.add_new(_PRIVATE_CREATOR, "LO", "SYNTH CREATOR")
    dataset.add_new(_PRIVATE_VALUE, "LO", "PRIVATE TOP")
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue(), dataset


def _fate(original: Dataset, result: Dataset, tag: int) -> str:
    if tag not in result:
        return "removed"
    element = result[tag]
    if element.VR == "SQ":
        if not element.value:
            return "empty"
        return "kept" if element.value == original[tag].value else "replaced"
    if element.is_empty:
        return "kept" if original[tag].is_empty else "empty"
    return "kept" if element.value == original[tag].value else "replaced"


def _strings(dataset: Dataset) -> Iterator[str]:
    for element in dataset:
        if element.VR == "SQ":
            for item in element.value:
                yield from _strings(item)
        elif element.VR in _TEXT_VRS | {"CS", "AE", "UR", "UI"} and not element.is_empty:
            yield str(element.value)


def _deidentify(data: bytes, config: dict[str, Any]) -> Dataset:
    return pydicom.dcmread(io.BytesIO(deidentify_instance(data, parse_config(config), uid_mapper("dest"))))


@pytest.fixture(scope="module")
def basic() -> tuple[dict[str, list[int]], Dataset, Dataset]:
    base = pydicom.dcmread(io.BytesIO(generate_dataset(1, 1, 1, seed=3101)[0].data))
    samples = _samples(base)
    data, original = _instance(samples)
    return samples, original, _deidentify(data, BASIC)


def test_table_holds_every_basic_profile_code() -> None:
    assert set(BASIC_PROFILE.values()) == set(ALLOWED)
    assert len(BASIC_PROFILE) > 500  # the whole table, not a hand-picked subset
    assert {code for _, _, code in BASIC_PROFILE_MASKED} == {"X"}  # curves, overlay data and comments


@pytest.mark.parametrize("code", sorted(ALLOWED))
def test_basic_profile_applies_each_action_code_at_the_top_level(
    code: str, basic: tuple[dict[str, list[int]], Dataset, Dataset]
) -> None:
    samples, original, result = basic
    assert samples[code], f"no attribute of code {code} sampled"
    fates = {f"{tag:08X}": _fate(original, result, tag) for tag in samples[code]}
    wrong = {tag: fate for tag, fate in fates.items() if fate not in ALLOWED[code]}
    assert not wrong, f"{code}: {wrong}"


@pytest.mark.parametrize("code", sorted(ALLOWED))
def test_basic_profile_applies_each_action_code_inside_a_sequence(
    code: str, basic: tuple[dict[str, list[int]], Dataset, Dataset]
) -> None:
    samples, original, result = basic
    before, after = original[_KEPT_SEQUENCE].value[0], result[_KEPT_SEQUENCE].value[0]
    tags = [tag for tag in samples[code] if tag in before]
    wrong = {f"{t:08X}": f for t in tags if (f := _fate(before, after, t)) not in ALLOWED[code]}
    assert not wrong, f"{code} in a sequence: {wrong}"


def test_basic_profile_keeps_what_the_table_does_not_list(basic: tuple[dict[str, list[int]], Dataset, Dataset]) -> None:
    _, original, result = basic
    kept = ["Modality", "Manufacturer", "Rows", "Columns", "BitsStored", "PixelData", "SOPClassUID", "KVP"]
    for keyword in kept:
        tag = tag_for_keyword(keyword)
        assert tag is not None and tag not in BASIC_PROFILE  # K: no row in Table E.1-1
        assert _fate(original, result, tag) == "kept", keyword
    assert result[_KEPT_SEQUENCE].value[0].CodeValue == "KEPT-CODE"


def test_basic_profile_removes_private_tags_everywhere(basic: tuple[dict[str, list[int]], Dataset, Dataset]) -> None:
    _, _, result = basic
    assert _PRIVATE_VALUE not in result and _PRIVATE_CREATOR not in result
    nested = result[_KEPT_SEQUENCE].value[0]
    assert _PRIVATE_VALUE not in nested and _PRIVATE_CREATOR not in nested


def test_basic_profile_replaces_uids_consistently(basic: tuple[dict[str, list[int]], Dataset, Dataset]) -> None:
    samples, original, result = basic
    nested = result[_KEPT_SEQUENCE].value[0]
    for tag in (t for t in samples["U"] if _vr(t) == "UI"):
        new = str(result[tag].value)
        assert new != str(original[tag].value) and UID(new).is_valid, f"{tag:08X}"
        if tag in nested and original[tag].value == original[_KEPT_SEQUENCE].value[0][tag].value:
            assert str(nested[tag].value) == new, f"{tag:08X}: one original UID, two replacements"


def test_basic_profile_leaves_no_original_text_of_a_listed_attribute(
    basic: tuple[dict[str, list[int]], Dataset, Dataset],
) -> None:
    _, _, result = basic
    traces = {int(tag, 16) for text in _strings(result) for tag in re.findall(r"ORIG([0-9A-F]{8})", text)}
    assert not sorted(f"{tag:08X}" for tag in traces if tag in BASIC_PROFILE)


def _required(sop_class: str) -> dict[int, str]:
    types: dict[int, str] = {}
    for module in SOP_CLASS_MODULES[sop_class]:
        for keyword, kind in MODULES[module].items():
            tag = tag_for_keyword(keyword)
            assert tag is not None
            types[tag] = min(types.get(tag, "3"), kind)
    return types


def test_minimal_keep_list_keeps_only_what_the_iod_requires(
    basic: tuple[dict[str, list[int]], Dataset, Dataset],
) -> None:
    samples, original, _ = basic
    data, original = _instance(samples)
    result = _deidentify(data, MINIMAL)
    required = _required(str(original.SOPClassUID))
    # nothing the IOD does not require survives, and no private tag
    assert not [f"{e.tag:08X}" for e in result if e.tag not in required]
    for tag, kind in required.items():
        if tag not in original:
            continue
        code = BASIC_PROFILE.get(tag)
        fate = _fate(original, result, tag)
        if code is None:  # required and not identifying: kept as it is
            assert fate == "kept", f"{tag:08X}"
        elif kind == "1":  # must keep a value: replaced (D, U)
            assert fate == "replaced", f"{tag:08X} {code}"
        else:  # Type 2: present, the value gone
            assert fate in {"empty", "replaced"}, f"{tag:08X} {code} {fate}"
    assert (result.Rows, result.Columns, result.PixelData) == (original.Rows, original.Columns, original.PixelData)

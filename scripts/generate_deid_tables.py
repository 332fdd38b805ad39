"""Generate the emulator's de-identification tables from the DICOM standard, as two libraries ship it.

Writes two data modules (formatted with ruff; commit the result)::

    python scripts/generate_deid_tables.py [--wheel-dir DIR]

* ``healthcare_emulator/deid_table.py``: PS3.15 Annex E Table E.1-1, the Basic Profile column (every
  attribute and its action code: D, Z, X, U, Z/D, X/Z, X/D, X/Z/D, X/Z/U*), from the tables that
  dicom-anonymizer (Kitware, BSD-3-Clause) generates from the standard's own HTML
  (``dicomanonymizer/dicom_anonymization_databases/dicomfields_<edition>.py``). Its 2023 edition is the one
  closest to the 2018e edition the Healthcare API names for ATTRIBUTE_CONFIDENTIALITY_BASIC_PROFILE.
* ``healthcare_emulator/deid_iods.py``: for every SOP class, the top-level attributes of Type 1/1C and 2/2C of
  the Mandatory and Conditional modules of its IOD (PS3.3), from highdicom's (MIT) ``_standard`` tables
  (``sop_class_iod_map.json``, ``iod_module_map.json``, ``module_attribute_map.json``).

Both wheels are fetched with ``pip download --no-deps`` (or read from ``--wheel-dir``) and read as zip files:
nothing of either library is imported or installed, and the emulator gains no dependency. The action lists are
parsed with ``ast.literal_eval``, never executed.
"""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from pydicom.datadict import keyword_for_tag, tag_for_keyword

ANONYMIZER = ("dicom-anonymizer", "2.1.0", "dicom_anonymizer-2.1.0-py3-none-any.whl")
HIGHDICOM = ("highdicom", "0.28.2", "highdicom-0.28.2-py3-none-any.whl")
EDITION = "2023"
# dicom-anonymizer's list names -> Table E.1-1 action codes
_CODES = {
    "D_TAGS": "D",
    "Z_TAGS": "Z",
    "X_TAGS": "X",
    "U_TAGS": "U",
    "Z_D_TAGS": "Z/D",
    "X_Z_TAGS": "X/Z",
    "X_D_TAGS": "X/D",
    "X_Z_D_TAGS": "X/Z/D",
    "X_Z_U_STAR_TAGS": "X/Z/U*",
}
ROOT = Path(__file__).resolve().parent.parent


def _wheel(wheel_dir: Path, package: tuple[str, str, str]) -> Path:
    name, version, filename = package
    path = wheel_dir / filename
    if not path.exists():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                f"{name}=={version}",
                "-d",
                str(wheel_dir),
            ],
            check=True,
        )
    return path


def basic_profile(wheel: Path) -> tuple[dict[int, str], list[tuple[int, int, str]]]:
    """Table E.1-1's Basic Profile column: {tag: code} and [(tag, mask, code)] for repeating groups."""
    member = f"dicomanonymizer/dicom_anonymization_databases/dicomfields_{EDITION}.py"
    tree = ast.parse(zipfile.ZipFile(wheel).read(member).decode())
    single: dict[int, str] = {}
    masked: list[tuple[int, int, str]] = []
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)):
            continue
        code = _CODES.get(node.targets[0].id)
        if code is None:
            continue
        for row in ast.literal_eval(node.value):
            tag = (row[0] << 16) | row[1]
            if len(row) == 4:  # (group, element, group mask, element mask): 50xx,xxxx and 60xx,3000-style rows
                masked.append((tag, (row[2] << 16) | row[3], code))
            else:
                assert tag not in single, f"{tag:08X} listed twice"
                single[tag] = code
    return single, masked


def iod_types(wheel: Path) -> tuple[dict[str, dict[str, str]], dict[str, list[str]]]:
    """PS3.3: {module: {keyword: "1"|"2"}} (top level, 1C as 1, 2C as 2) and {SOP class UID: [M and C modules]}."""
    archive = zipfile.ZipFile(wheel)

    def load(name: str) -> Any:
        return json.loads(archive.read(f"highdicom/_standard/{name}.json"))

    attributes, iods, sop_classes = load("module_attribute_map"), load("iod_module_map"), load("sop_class_iod_map")
    modules: dict[str, dict[str, str]] = {}
    by_sop_class: dict[str, list[str]] = {}
    for sop_class, iod in sorted(sop_classes.items()):
        keys = [m["key"] for m in iods.get(iod, []) if m["usage"] in ("M", "C") and m["key"] in attributes]
        by_sop_class[sop_class] = keys
        for key in keys:
            if key in modules:
                continue
            types: dict[str, str] = {}
            for attribute in attributes[key]:
                keyword = attribute["keyword"]
                if attribute["path"] or tag_for_keyword(keyword) is None or attribute["type"][0] not in "12":
                    continue
                types[keyword] = min(types.get(keyword, "3"), attribute["type"][0])
            modules[key] = types
    return modules, by_sop_class


def _name(tag: int) -> str:
    return keyword_for_tag(tag) or "(no keyword)"


def render_table(single: dict[int, str], masked: list[tuple[int, int, str]]) -> str:
    lines = [
        '"""PS3.15 Annex E Table E.1-1, Basic Profile column: what the Basic Profile does to each attribute.',
        "",
        f"Generated by scripts/generate_deid_tables.py from dicom-anonymizer {ANONYMIZER[1]} (BSD-3-Clause): its",
        f"``dicomfields_{EDITION}`` table, made from the {EDITION} edition of PS3.15 Annex E. Do not edit.",
        "Codes: D dummy value, Z zero length, X remove, U new UID, and the combined X/Z, X/D, X/Z/D, Z/D, X/Z/U*.",
        "Attributes not listed are kept (K); private attributes are removed (a separate row of the table).",
        '"""',
        "",
        f'SOURCE = "dicom-anonymizer {ANONYMIZER[1]}, dicomfields_{EDITION}"',
        f'EDITION = "{EDITION}"',
        "",
        "BASIC_PROFILE: dict[int, str] = {",
        *(f'    0x{tag:08X}: "{code}",  # {_name(tag)}' for tag, code in sorted(single.items())),
        "}",
        "",
        "# Repeating groups: (tag, mask, code) matches every tag t with t & mask == tag",
        "BASIC_PROFILE_MASKED: tuple[tuple[int, int, str], ...] = (",
        *(f'    (0x{tag:08X}, 0x{mask:08X}, "{code}"),' for tag, mask, code in sorted(masked)),
        ")",
        "",
    ]
    return "\n".join(lines)


def render_iods(modules: dict[str, dict[str, str]], by_sop_class: dict[str, list[str]]) -> str:
    lines = [
        '"""PS3.3: the attributes each IOD requires, by Type (1: present with a value; 2: present, may be empty).',
        "",
        f"Generated by scripts/generate_deid_tables.py from highdicom {HIGHDICOM[1]}'s (MIT) ``_standard`` tables.",
        "Do not edit. For each SOP class the Mandatory and Conditional modules of its IOD; for each module its",
        "top-level attributes (by keyword) of Type 1 or 1C (as ``1``) and 2 or 2C (as ``2``). Conditions are not",
        "evaluated.",
        '"""',
        "",
        f'SOURCE = "highdicom {HIGHDICOM[1]}, _standard/*.json"',
        "",
        "MODULES: dict[str, dict[str, str]] = {",
    ]
    for key, types in sorted(modules.items()):
        lines.append(f'    "{key}": {{')
        lines.extend(f'        "{keyword}": "{kind}",' for keyword, kind in sorted(types.items()))
        lines.append("    },")
    lines += ["}", "", "SOP_CLASS_MODULES: dict[str, tuple[str, ...]] = {"]
    for sop_class, keys in sorted(by_sop_class.items()):
        lines.append(f'    "{sop_class}": (')
        lines.extend(f'        "{key}",' for key in keys)
        lines.append("    ),")
    lines += ["}", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--wheel-dir", type=Path, help="where the two wheels are (downloaded there if missing)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        wheel_dir = args.wheel_dir or Path(scratch)
        single, masked = basic_profile(_wheel(wheel_dir, ANONYMIZER))
        modules, by_sop_class = iod_types(_wheel(wheel_dir, HIGHDICOM))
    outputs = {"deid_table.py": render_table(single, masked), "deid_iods.py": render_iods(modules, by_sop_class)}
    for name, text in outputs.items():
        (ROOT / "healthcare_emulator" / name).write_text(text)
    paths = [str(ROOT / "healthcare_emulator" / name) for name in outputs]
    subprocess.run([sys.executable, "-m", "ruff", "format", *paths], check=True)
    print(
        f"Table E.1-1 ({EDITION}): {len(single)} attributes, {len(masked)} repeating groups; "
        f"{len(by_sop_class)} SOP classes, {len(modules)} modules"
    )


if __name__ == "__main__":
    main()

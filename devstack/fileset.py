"""A DICOM media file-set as written to CD/DVD: a DICOMDIR beside extensionless files in nested folders."""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

import pydicom
from pydicom.fileset import FileSet

from devstack.synthetic import SyntheticInstance


def write_file_set(instances: Iterable[SyntheticInstance], root: Path) -> list[Path]:
    """Write ``root/DICOMDIR`` and its files (``PT000000/ST000000/SE000000/IM000000``...) with pydicom's
    FileSet API; returns every file written, the DICOMDIR first."""
    file_set = FileSet()
    for instance in instances:
        file_set.add(pydicom.dcmread(io.BytesIO(instance.data)))
    file_set.write(root)
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != "DICOMDIR")
    return [root / "DICOMDIR", *files]

"""The soak's upload shapes: what each one writes (names, bytes, UIDs). Uploading, deleting and pacing are
``bench.soak``'s; what each shape may become is ``bench.soak_model.ALLOWED``."""

from __future__ import annotations

import random
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.soak_model import Upload
from devstack.fileset import write_file_set
from devstack.synthetic import SyntheticInstance, generate_dataset, make_instance

ROOT = "soak"
BAD_CONTENTS = (b"plain text, not DICOM", b"", b"\0" * 128 + b"DICM" + b"\xff" * 64)


@dataclass(frozen=True)
class Item:
    shape: str
    name: str
    data: bytes
    uids: tuple[str, str, str] | None = None


def _uids(instance: SyntheticInstance) -> tuple[str, str, str]:
    return instance.study_uid, instance.series_uid, instance.sop_uid


def study(number: int, seed: int, series: int = 2, instances: int = 5) -> list[Item]:
    """A new study folder: soak/studies/NNNNN/PAT0001/STUDY01/SERIESxx/IMxxxx.dcm (some RLE, one multi-frame)."""
    made = generate_dataset(1, series, instances, seed=seed, compressed_every=4, multiframe_every=7)
    return [Item("study", f"{ROOT}/studies/{number:05d}/{i.relative_path}", i.data, _uids(i)) for i in made]


def drop(seed: int, count: int = 5) -> list[Item]:
    """New files in one flat drop folder that already holds every earlier one, named by SOP Instance UID."""
    made = generate_dataset(1, 1, count, seed=seed)
    return [Item("drop", f"{ROOT}/drop/{i.sop_uid}.dcm", i.data, _uids(i)) for i in made]


def deleted(number: int, seed: int, count: int = 2) -> list[Item]:
    """Files that ``bench.soak`` deletes a few seconds after their upload."""
    made = generate_dataset(1, 1, count, seed=seed)
    return [Item("delete", f"{ROOT}/delete/{number:05d}/IM{k:02d}.dcm", i.data, _uids(i)) for k, i in enumerate(made)]


def bad(number: int) -> Item:
    """Not DICOM, empty, or garbage after the DICM prefix, in turn."""
    return Item("bad", f"{ROOT}/bad/{number:05d}.dcm", BAD_CONTENTS[number % len(BAD_CONTENTS)])


def resend(original: Upload, data: bytes) -> Item:
    """The same bytes uploaded again under the same name (a new generation, a duplicate for the store)."""
    return Item("resend", original.name, data, original.uids)


def conflict(original: Upload, rng: random.Random) -> Item:
    """Other bytes with the original's UIDs under the same name (a corrected re-send, refused by the store)."""
    assert original.uids is not None
    study_uid, series_uid, sop_uid = original.uids
    data = make_instance(study_uid=study_uid, series_uid=series_uid, sop_uid=sop_uid, seed=rng.getrandbits(63),
                         SeriesDescription="CORRECTED")  # fmt: skip
    return Item("conflict", original.name, data, original.uids)


def media(number: int, seed: int) -> list[Item]:
    """A DICOM media file-set: soak/media/NNNNN/DICOMDIR and its extensionless images (pydicom's FileSet)."""
    made = generate_dataset(2, 1, 3, seed=seed)
    by_sop = {i.sop_uid: i for i in made}
    with tempfile.TemporaryDirectory(prefix="soak-media-") as tmp:
        root = Path(tmp) / "CDROM"
        dicomdir, *images = write_file_set(made, root)
        prefix = f"{ROOT}/media/{number:05d}/"
        items = [Item("dicomdir", prefix + "DICOMDIR", dicomdir.read_bytes())]
        for image in images:
            data = image.read_bytes()
            instance = next(i for sop, i in by_sop.items() if sop.encode() in data)
            items.append(Item("media", prefix + image.relative_to(root).as_posix(), data, _uids(instance)))
    return items

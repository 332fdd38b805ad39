"""What the emulator's store refuses, file by file: a refusal is that file's reason, never an error of the
whole import."""

from __future__ import annotations

import pytest

from devstack.synthetic import deflated_cut_short, make_instance, without_sop_class
from healthcare_emulator.instances import InvalidInstanceError, parse_instance

GOOD = make_instance(study_uid="2.25.61", series_uid="2.25.62", sop_uid="2.25.63")


def test_a_good_instance_parses() -> None:
    assert parse_instance(GOOD).sop_uid == "2.25.63"


@pytest.mark.parametrize(
    ("data", "reason"),
    [(without_sop_class(GOOD), "missing SOPClassUID"),
     (deflated_cut_short(GOOD), "cannot parse DICOM file: its deflated data set does not inflate"),
     (b"", "empty file"), (b"hello", "not a DICOM Part 10 file")],
)  # fmt: skip
def test_a_file_the_store_refuses_raises_its_reason(data: bytes, reason: str) -> None:
    with pytest.raises(InvalidInstanceError) as refused:
        parse_instance(data)
    assert reason in str(refused.value)

"""Content conflicts through the real functions and the emulator: a re-upload with the same UIDs and other
bytes ends on dicom-failed (stage conflict) within its batch and the result counts it; an identical
re-upload is harmless."""

from __future__ import annotations

import json

import pytest

from devstack.synthetic import make_instance
from tests.integration.conftest import upload
from tests.integration.pipeline_helpers import Pipeline, _flush, _intake_all, drain_operations, results

pytestmark = pytest.mark.integration


def _instance(patient_name: str) -> bytes:
    return make_instance(study_uid="2.25.8001", series_uid="2.25.8002", sop_uid="2.25.8003", patient_name=patient_name)


def test_a_conflicting_reupload_is_reported_and_an_identical_one_is_not(pipeline: Pipeline) -> None:
    # GIVEN an instance in the store
    first = _instance("SYNTH^FIRST")
    upload(pipeline.bucket, {"day1/a.dcm": first})
    _intake_all(pipeline, ["day1/a.dcm"])
    assert _flush().status_code == 200
    drain_operations(pipeline)
    results(pipeline)
    # WHEN the same UIDs arrive again with other content, and once more with the same content
    upload(pipeline.bucket, {"day2/a.dcm": _instance("SYNTH^CHANGED"), "day3/a.dcm": first})
    _intake_all(pipeline, ["day2/a.dcm", "day3/a.dcm"])
    assert _flush().status_code == 200
    drain_operations(pipeline)
    # THEN the changed file is on dicom-failed as a conflict, on its first attempt; the identical one is not
    failed = [json.loads(m.message.data) for m in pipeline.pull("failed")]
    assert [(f["name"], f["stage"], f["attempt"]) for f in failed] == [("day2/a.dcm", "conflict", 1)]
    assert "other content" in failed[0]["reason"]
    [result] = results(pipeline)
    assert (result["files"], result["imported"], result["failed"], result["redriven"]) == (2, 1, 1, 0)
    assert pipeline.pull("pending") == []  # not re-driven

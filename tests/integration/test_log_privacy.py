"""LOG_OBJECT_NAMES=hashed through the real functions: a folder named after the patient never reaches a log
line, while dicom-failed keeps the name an operator needs to re-drive the file."""

from __future__ import annotations

import json

import pytest

from devstack.synthetic import generate_dataset
from handlers import runtime as runtime_module
from tests.integration.conftest import upload
from tests.integration.pipeline_helpers import Pipeline, _flush, _intake_all, drain_operations

pytestmark = pytest.mark.integration
FOLDER = "DOE^JOHN_12345"


def test_hashed_object_names_keep_patient_folders_out_of_every_log_line(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the hashed policy, a good instance and a non-DICOM file in a folder named after the patient
    monkeypatch.setenv("LOG_OBJECT_NAMES", "hashed")
    monkeypatch.setenv("LOG_HASH_KEY", "a-secret-key-of-some-length")
    runtime_module.reset()
    instance = generate_dataset(1, 1, 1, seed=741)[0]
    upload(pipeline.bucket, {f"{FOLDER}/a.dcm": instance.data, f"{FOLDER}/notes.dcm": b"not dicom"})
    # WHEN both go through intake, flush and follow-up
    _intake_all(pipeline, [f"{FOLDER}/a.dcm", f"{FOLDER}/notes.dcm"])
    assert _flush().status_code == 200
    drain_operations(pipeline)
    # THEN the functions logged plenty, and no line holds the name
    lines = [line for line in capfd.readouterr().out.splitlines() if line.startswith("{")]
    assert len(lines) >= 5
    assert not [line for line in lines if "DOE" in line or "JOHN" in line]
    assert any(json.loads(line).get("object", "").startswith("h:") for line in lines)
    # AND the failure message keeps the real name (what requeue needs)
    [failed] = [json.loads(m.message.data) for m in pipeline.pull("failed")]
    assert failed["name"] == f"{FOLDER}/notes.dcm"

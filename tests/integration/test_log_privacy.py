"""LOG_OBJECT_NAMES=hashed through the real functions: a folder named after the patient never reaches a log
line, while dicom-failed keeps the name an operator needs to re-drive the file."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from google.api_core import exceptions as gexc
from google.cloud import storage

from devstack.synthetic import generate_dataset
from dicomflow.cli import app
from handlers import runtime as runtime_module
from tests.integration.conftest import upload
from tests.integration.pipeline_helpers import (
    Pipeline,
    _intake_all,
    _stored_sops,
    flush_and_follow,
    import_and_follow,
)

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
    import_and_follow(pipeline, [f"{FOLDER}/a.dcm", f"{FOLDER}/notes.dcm"])
    # THEN the functions logged plenty, and no line holds the name
    lines = [line for line in capfd.readouterr().out.splitlines() if line.startswith("{")]
    assert len(lines) >= 5
    assert not [line for line in lines if "DOE" in line or "JOHN" in line]
    assert any(json.loads(line).get("object", "").startswith("h:") for line in lines)
    # AND the failure message keeps the real name (what requeue needs)
    [failed] = [json.loads(m.message.data) for m in pipeline.pull("failed")]
    assert failed["name"] == f"{FOLDER}/notes.dcm"


# Names a sender really gives folders: spaces (the hash used to stop at the first one), Unicode, punctuation.
HOSTILE = {"good": "Doe Jane 1970/CT 1/a.dcm", "unicode": "Müller, Jürgen 北京/série 2/b.dcm",
           "bad": "O'Brien Pat (MRN 4711)/notes.dcm", "denied": "Smith Ann (denied)/c.dcm"}  # fmt: skip
WORDS = ("Doe", "Jane", "Müller", "Jürgen", "北京", "série", "O'Brien", "Pat", "4711", "Smith", "Ann", "denied")


def _denied_reads(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """The storage client refuses reads of ``name`` as GCS does without storage.objects.get: a 403 whose text
    holds the object's URL (and so the name), which the adapter wraps into "reading gs://BUCKET/NAME: HTTP 403"."""
    real = storage.Blob.download_as_bytes

    def download(blob: storage.Blob, *args: Any, **kwargs: Any) -> bytes:
        if blob.name == name:
            url = f"https://storage.googleapis.com/download/storage/v1/b/{blob.bucket.name}/o/{quote(name, safe='')}"
            raise gexc.Forbidden(f"GET {url}?alt=media: caller does not have storage.objects.get access")
        data: bytes = real(blob, *args, **kwargs)
        return data

    monkeypatch.setattr(storage.Blob, "download_as_bytes", download)


def _leaked(lines: list[str]) -> list[str]:
    """Lines that hold any word of the names, read raw and with JSON escapes decoded (Unicode, quotes)."""

    def decoded(line: str) -> str:
        return json.dumps(json.loads(line), ensure_ascii=False) if line.startswith("{") else line

    return [line for line in lines if any(word in line or word in decoded(line) for word in WORDS)]


def test_hashed_mode_keeps_names_with_spaces_and_unicode_out_of_functions_and_backfill_logs(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the hashed policy, staging of every file (copies log their source), and files under hostile names
    monkeypatch.setenv("LOG_OBJECT_NAMES", "hashed")
    monkeypatch.setenv("LOG_HASH_KEY", "a-secret-key-of-some-length")
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("STAGING", "always")
    runtime_module.reset()
    first, second, third = generate_dataset(1, 1, 3, seed=742)
    upload(pipeline.bucket, {HOSTILE["good"]: first.data, HOSTILE["unicode"]: second.data, HOSTILE["bad"]: b"no",
                             HOSTILE["denied"]: third.data})  # fmt: skip
    # WHEN they go through intake (reads of one of them refused with a 403 that names it), flush and follow-up
    with monkeypatch.context() as refusing:
        _denied_reads(refusing, HOSTILE["denied"])
        _intake_all(pipeline, list(HOSTILE.values()))
    flush_and_follow(pipeline)
    # AND the backfill job (the CLI, verbose) runs over the same folders
    assert app.main(["-v", "backfill", f"gs://{pipeline.bucket.name}/"]) == 0
    # THEN plenty was logged, and no line on stdout or stderr holds any part of any name
    captured = capfd.readouterr()
    lines = captured.out.splitlines() + captured.err.splitlines()
    json_lines = [line for line in lines if line.startswith("{")]
    assert len(json_lines) >= 10
    assert _leaked(lines) == []
    hashed = {json.loads(line).get("object") for line in json_lines} - {None}
    assert hashed and all(value.startswith("h:") for value in hashed)
    assert any("HTTP 403" in line for line in lines)  # the refusal was logged, its name hashed
    # AND the good files were imported, and the failure messages keep the real name (what requeue needs)
    assert {first.sop_uid, second.sop_uid} <= set(_stored_sops(pipeline))
    failed = {json.loads(m.message.data)["name"] for m in pipeline.pull("failed")}
    assert HOSTILE["bad"] in failed and failed <= set(HOSTILE.values())

"""READY_MARKER through the real functions and services: a folder marked complete is imported at the next
flush although its settle window has not passed; a file uploaded after the marker waits for its own."""

from __future__ import annotations

import time

import pytest

from devstack.synthetic import generate_dataset
from dicomflow.messages.records import PendingRecord
from handlers import runtime as runtime_module
from tests.integration.conftest import upload
from tests.integration.pipeline_helpers import (
    Pipeline,
    _stored_sops,
    _upload,
    import_and_follow,
)

pytestmark = pytest.mark.integration


def test_a_marked_folder_is_imported_at_once_and_a_later_file_waits(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN folders settle only after an hour, and a sender that writes _READY when a study is complete
    for key, value in {"SETTLE_SECONDS": "3600", "MAX_WAIT_SECONDS": "7200", "READY_MARKER": "_READY"}.items():
        monkeypatch.setenv(key, value)
    runtime_module.reset()
    study = generate_dataset(1, 2, 3, seed=771)
    names = _upload(pipeline, study, "pacs-export")
    upload(pipeline.bucket, {"pacs-export/_READY": b""})
    time.sleep(1.1)  # object times have one-second resolution here: the late file is clearly after the marker
    late = generate_dataset(1, 1, 1, seed=772)[0]
    [late_name] = _upload(pipeline, [late], "pacs-export/late")
    # WHEN intake sees the files, the marker and the late file, and the flush ticks
    import_and_follow(pipeline, [*names, "pacs-export/_READY", late_name])
    # THEN the study is in the store, the marker was neither imported nor reported, the late file still waits
    assert sorted(_stored_sops(pipeline)) == sorted(i.sop_uid for i in study)
    assert pipeline.pull_waiting("failed") == []
    waiting = [PendingRecord.from_json(m.message.data).name for m in pipeline.pull("pending")]
    assert waiting == [late_name]

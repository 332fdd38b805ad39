"""One on_flush invocation (FLUSH_RUN_SECONDS) through functions-framework, the Pub/Sub emulator,
fake-gcs-server and healthcare_emulator: folders that settle while it runs are imported by it, not by the
next tick."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import pytest

from devstack.synthetic import generate_dataset
from dicomflow.config.settings import Settings
from dicomflow.messages.records import WatchMessage
from handlers import runtime as runtime_module
from tests.integration.conftest import wait_for_operation
from tests.integration.pipeline_helpers import Pipeline, _flush, _intake_all, _stored_sops, _upload

pytestmark = pytest.mark.integration


def test_one_flush_invocation_imports_folders_that_settle_while_it_runs(
    pipeline: Pipeline, api_v1: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN SETTLE_SECONDS 3, a flush run of 30 s, and a folder uploaded and taken in just before the tick
    for name, value in {"SETTLE_SECONDS": "3", "MAX_WAIT_SECONDS": "60", "FLUSH_RUN_SECONDS": "30"}.items():
        monkeypatch.setenv(name, value)
    runtime_module.reset()
    first, second = generate_dataset(1, 1, 3, seed=741), generate_dataset(1, 1, 4, seed=742)
    _intake_all(pipeline, _upload(pipeline, first, "run-a"))
    batches = Settings.from_env(os.environ).state_prefix + "batches/"

    uploaded: list[BaseException | None] = []  # the uploader's outcome, checked on the test's thread

    def upload_during_the_run() -> None:
        try:
            deadline = time.monotonic() + 30  # the event: the run's first batch is in the ledger
            while not any(b.name.endswith("/manifest.json") for b in pipeline.bucket.list_blobs(prefix=batches)):
                assert time.monotonic() < deadline, "the run made no first batch"
                time.sleep(0.2)
            _intake_all(pipeline, _upload(pipeline, second, "run-b"))
        except BaseException as exc:
            uploaded.append(exc)
            raise
        uploaded.append(None)

    # WHEN one tick arrives, and a second folder is uploaded and taken in once the run has made its first batch
    uploader = threading.Thread(target=upload_during_the_run, name="uploader")
    uploader.start()
    try:
        assert _flush().status_code == 200
    finally:
        uploader.join(timeout=60)
    assert uploaded == [None], f"the upload during the run failed: {uploaded}"
    # THEN that single invocation imported both folders, one batch each, and acknowledged every record
    watches = [WatchMessage.from_json(m.message.data) for m in pipeline.pull("operations")]
    assert len(watches) == 2 and len({w.batch_id for w in watches}) == 2
    operations = [wait_for_operation(api_v1, w.operation) for w in watches]
    assert sorted(int(o["metadata"]["counter"]["success"]) for o in operations) == [3, 4]
    assert sorted(_stored_sops(pipeline)) == sorted(i.sop_uid for i in [*first, *second])
    assert pipeline.pull_waiting("pending") == []

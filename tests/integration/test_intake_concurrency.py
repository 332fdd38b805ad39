"""Concurrent deliveries into one functions-framework process (gunicorn with request threads, as Cloud Functions
gen2 serves a function with concurrency): every event's record is queued once, none lost, none doubled, the
first requests of the fresh process included."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from devstack.processes import free_port, start_function
from devstack.synthetic import generate_dataset
from dicomflow.messages.records import PendingRecord
from tests.integration.pipeline_helpers import Pipeline, _object_resource, _structured, _upload

pytestmark = pytest.mark.integration


def test_concurrent_intake_requests_into_one_process_queue_every_record_once(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    # GIVEN 64 uploaded instances and a fresh intake process serving 16 requests at once
    instances = generate_dataset(2, 2, 16, seed=761)
    names = _upload(pipeline, instances, "burst")
    requests_ = [_structured(_object_resource(pipeline.bucket, name)) for name in names]
    port = free_port()
    process = start_function("on_object_finalized", port, {**os.environ, "THREADS": "16", "LOG_LEVEL": "WARNING"},
                             log_path=tmp_path / "intake.log")  # fmt: skip
    try:
        # WHEN all 64 events arrive 16 at a time, the very first ones together
        def deliver(request: tuple[dict[str, str], str]) -> int:
            headers, body = request
            return requests.post(f"http://127.0.0.1:{port}/", headers=headers, data=body, timeout=60).status_code

        with ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(deliver, requests_))
    finally:
        process.stop()
    # THEN every delivery succeeded and the pending topic holds exactly one record per object
    assert statuses == [200] * len(names)
    records = [PendingRecord.from_json(m.message.data) for m in pipeline.pull("pending")]
    assert sorted(r.name for r in records) == sorted(names)
    assert {r.sop_uid for r in records} == {i.sop_uid for i in instances}
    assert pipeline.pull_waiting("failed") == []
    runtimes = [json.loads(line) for line in (tmp_path / "intake.log").read_text().splitlines() if line.startswith("{")]
    assert not [r for r in runtimes if r.get("severity") in ("ERROR", "CRITICAL")]

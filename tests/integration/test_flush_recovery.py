"""A flush process killed while it holds records: the records come back to the next flush within the lease
(FLUSH_LEASE_SECONDS), not after the subscription's whole retention or a long fixed deadline."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devstack.synthetic import generate_dataset
from tests.integration.pipeline_helpers import Pipeline, _intake_all, _upload

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
LEASE = 10
FLUSH = (
    "from handlers.runtime import runtime\n"
    "from dicomflow.flush import run_flush\n"
    "rt = runtime('on_flush')\n"
    "run_flush(rt.settings, subscriber=rt.subscriber, publisher=rt.publisher, store=rt.store,"
    " healthcare=rt.healthcare)\n"
)


def test_records_of_a_killed_flush_come_back_within_the_lease(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN queued records and a Healthcare API that holds the import request for a minute
    monkeypatch.setenv("FLUSH_LEASE_SECONDS", str(LEASE))
    _intake_all(pipeline, _upload(pipeline, generate_dataset(1, 1, 3, seed=731), "crash"))
    pipeline.inject_fault({"method": "POST", "path": ":import$", "seconds": 60})
    # WHEN a flush process pulls them, starts the import and is killed (SIGKILL) while it waits
    child = subprocess.Popen([sys.executable, "-c", FLUSH], cwd=ROOT, env=dict(os.environ),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while sum(pipeline.faults_fired()) == 0:
            assert child.poll() is None and time.monotonic() < deadline, "the flush never reached the import"
            time.sleep(0.2)
        assert pipeline.pull_waiting("pending") == []  # held by the flush's lease
        os.killpg(child.pid, signal.SIGKILL)
        killed = time.monotonic()
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    # THEN the records are deliverable again once the lease ran out: all three, however long a loaded machine takes
    back = pipeline.pull_waiting("pending", seconds=6 * LEASE + 60, until=3)
    waited = time.monotonic() - killed
    print(f"records back {waited:.1f} s after the kill (lease {LEASE} s)")
    assert len(back) == 3

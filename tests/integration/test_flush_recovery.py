"""A flush process killed while it holds records: the records come back to the next flush within the lease
(FLUSH_LEASE_SECONDS), not after the subscription's whole retention or a long fixed deadline. A flush that pulls
while records keep arriving holds every record it pulled until it settles it: none is delivered to it twice, none
reaches a second batch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from google.cloud import pubsub_v1

from devstack.synthetic import generate_dataset
from dicomflow.stages.flush import FlushReport, run_flush
from handlers import runtime as runtime_module
from tests.integration.conftest import PROJECT
from tests.integration.pipeline_helpers import Pipeline, _intake_all, _upload

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
LEASE = 10
FLUSH = (
    "from handlers.runtime import runtime\n"
    "from dicomflow.stages.flush import run_flush\n"
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


def test_records_arriving_while_a_flush_pulls_are_held_once_and_batched_once(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a pending subscription whose ack deadline is the lease (10 s, as deployed: both 30 s by default)
    subscriber = pubsub_v1.SubscriberClient()
    subscription = f"{pipeline.names['pending-sub']}-lease"
    subscriber.create_subscription(request={
        "name": subscriber.subscription_path(PROJECT, subscription),
        "topic": subscriber.topic_path(PROJECT, pipeline.names["pending"]), "ack_deadline_seconds": LEASE,
    })  # fmt: skip
    # (MAX_BATCH_FILES 100: a pull that kept going past the deadline ends within a minute, its duplicates counted)
    settings = {"FLUSH_LEASE_SECONDS": str(LEASE), "PENDING_SUBSCRIPTION": subscription, "MAX_BATCH_FILES": "100"}
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    runtime_module.reset()
    names = _upload(pipeline, generate_dataset(1, 3, 10, seed=733), "trickle")
    # and intake taking the 30 files in one every 0.5 s: records keep arriving for longer than the ack deadline
    trickled: list[BaseException | None] = []

    def trickle() -> None:
        try:
            for name in names:
                _intake_all(pipeline, [name])
                time.sleep(0.5)
        except BaseException as exc:
            trickled.append(exc)
            raise
        trickled.append(None)

    def flush() -> FlushReport:
        rt = runtime_module.runtime("on_flush")
        return run_flush(rt.settings, subscriber=rt.subscriber, publisher=rt.publisher, store=rt.store,
                         healthcare=rt.healthcare)  # fmt: skip

    # WHEN a flush pass starts while they arrive, and passes follow until the subscription is empty
    uploader = threading.Thread(target=trickle, name="trickle")
    uploader.start()
    try:
        time.sleep(1)
        passes = [flush()]
    finally:
        uploader.join(timeout=120)
    assert trickled == [None], f"intake failed: {trickled}"
    while passes[-1].pulled:
        passes.append(flush())
    # THEN no pass pulled a record twice (its pull ended within the deadline of what it pulled first, before the
    # lease took over), and every file is in exactly one batch: none staged and imported again by a later batch
    assert [p.redelivered for p in passes] == [0] * len(passes)
    batches: Counter[str] = Counter()
    for blob in pipeline.bucket.list_blobs(prefix="dicomflow/batches/"):
        if blob.name.endswith("/manifest.json"):
            batches.update(f["name"] for f in json.loads(blob.download_as_bytes())["files"])
    assert sorted(batches) == sorted(names)
    assert {name: count for name, count in batches.items() if count > 1} == {}
    print(
        f"{len(names)} files in {len([p for p in passes if p.batch_id])} batches; pulled per pass "
        f"{[p.pulled for p in passes]}"
    )

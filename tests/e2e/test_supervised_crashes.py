"""Each function process killed by its PID (SIGKILL) during a 500-file upload: the stack's supervisor restarts
it, and every file ends in the store."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import requests

from devstack.client import storage_client
from devstack.stack import FUNCTIONS, INCOMING_BUCKET, LocalStack, StackConfig
from devstack.synthetic import generate_dataset

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    config = StackConfig.on_free_ports(
        settle_seconds=1.0, max_wait_seconds=10.0, flush_interval=1.0, data_dir=tmp_path_factory.mktemp("crashes")
    )
    local = LocalStack(config)
    local.start()
    try:
        yield local
    finally:
        local.stop()


def _wait(condition: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def _stored(local: LocalStack) -> list[str]:
    assert local.endpoints is not None
    url = f"{local.endpoints.healthcare_url}/v1/{local.endpoints.store_name}/dicomWeb/instances"
    response = requests.get(url, params={"limit": 5000}, timeout=60)
    return [item["00080018"]["Value"][0] for item in response.json()] if response.status_code == 200 else []


def test_every_function_killed_once_during_a_500_file_upload_loses_and_duplicates_nothing(stack: LocalStack) -> None:
    assert stack.endpoints is not None
    # GIVEN 500 instances being uploaded in nested folders
    instances = generate_dataset(5, 4, 25, seed=1818)
    assert len(instances) == 500
    bucket = storage_client(stack.endpoints.storage_host).bucket(INCOMING_BUCKET)
    uploaded: list[str] = []

    def upload() -> None:
        for instance in instances:
            name = f"crash/{instance.relative_path}"
            bucket.blob(name).upload_from_string(instance.data, content_type="application/dicom")
            uploaded.append(name)

    uploader = threading.Thread(target=upload, daemon=True)
    uploader.start()
    # WHEN each function process is killed by its PID once, a fifth, two fifths and three fifths into the upload
    killed = {}
    for target, after in zip(FUNCTIONS, (100, 200, 300), strict=True):
        _wait(lambda after=after: len(uploaded) >= after, f"{after} uploads", timeout=600)  # type: ignore[misc]
        killed[target] = stack.processes[target].pid
        os.kill(killed[target], signal.SIGKILL)
    uploader.join(timeout=600)
    assert len(uploaded) == 500
    # THEN the supervisor restarted each one, and the stack stays up
    for target, pid in killed.items():
        _wait(lambda t=target, p=pid: stack.processes[t].pid != p and stack.processes[t].alive(),  # type: ignore[misc]
              f"{target} restarted", timeout=120)  # fmt: skip
    # AND every file ends in the store (a killed flush's leases run out after 120 s: allow for it)
    expected = {i.sop_uid for i in instances}
    _wait(lambda: set(_stored(stack)) >= expected, "all 500 instances in the store", timeout=900)
    assert set(_stored(stack)) == expected  # (the store keys on the UIDs: a listing cannot hold one twice)
    assert stack.failure is None

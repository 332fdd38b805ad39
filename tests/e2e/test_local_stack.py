"""The whole local stack on free ports: uploads through the GCS API end as imported, exported, reported."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from google.cloud import pubsub_v1

from devstack.checks import assert_counts_add_up
from devstack.client import operations, read_journal, storage_client
from devstack.stack import (
    EXPORT_BUCKET,
    INCOMING_BUCKET,
    NOTIFICATIONS_TOPIC,
    STATE_BUCKET,
    LocalStack,
    StackConfig,
    StackEndpoints,
)
from devstack.synthetic import SyntheticInstance, generate_dataset, make_instance
from devstack.wiring import PROJECT

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalStack, StackEndpoints]]:
    config = StackConfig.on_free_ports(
        settle_seconds=1.0, max_wait_seconds=10.0, flush_interval=1.0, data_dir=tmp_path_factory.mktemp("stack"),
    )  # fmt: skip
    local = LocalStack(config)
    endpoints = local.start()
    try:
        yield local, endpoints
    finally:
        local.stop()


def _wait(condition: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def _upload(endpoints: StackEndpoints, files: dict[str, bytes]) -> None:
    bucket = storage_client(endpoints.storage_host).bucket(INCOMING_BUCKET)
    for name, data in files.items():
        bucket.blob(name).upload_from_string(data, content_type="application/dicom")


def _devstack(endpoints: StackEndpoints, command: str, *options: str) -> Any:
    """``python -m devstack COMMAND --data-dir DIR OPTIONS`` in its own process (what a user runs); its JSON."""
    argv = [sys.executable, "-m", "devstack", command, "--data-dir", str(endpoints.data_dir), *options]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _stored(endpoints: StackEndpoints) -> list[str]:
    url = f"{endpoints.healthcare_url}/v1/{endpoints.store_name}/dicomWeb/instances"
    response = requests.get(url, timeout=30)
    if response.status_code == 204:  # QIDO-RS answers 204 No Content when nothing matches
        return []
    return [item["00080018"]["Value"][0] for item in response.json()]


def _imports(endpoints: StackEndpoints) -> list[dict[str, Any]]:
    dataset = endpoints.store_name.split("/dicomStores/")[0]
    return [
        o
        for o in operations(endpoints.healthcare_url, dataset)
        if o["metadata"]["apiMethodName"].endswith("Import" + "DicomData")
    ]


def _exported(endpoints: StackEndpoints) -> set[str]:
    return {b.name for b in storage_client(endpoints.storage_host).list_blobs(EXPORT_BUCKET, prefix="dicom/")}


def _expected_exports(instances: list[SyntheticInstance]) -> set[str]:
    return {f"dicom/{i.study_uid}/{i.series_uid}/{i.sop_uid}.dcm" for i in instances}


def test_every_valid_upload_is_imported_exported_and_reported(stack: tuple[LocalStack, StackEndpoints]) -> None:
    _, endpoints = stack
    # GIVEN 2 studies x 2 series x 5 instances in nested folders, a text file named .dcm and a name with '['
    instances = generate_dataset(2, 2, 5, seed=901, multiframe_every=6, compressed_every=7)
    odd = make_instance(study_uid="2.25.901", series_uid="2.25.902", sop_uid="2.25.903")
    files = {f"e2e-1/{i.relative_path}": i.data for i in instances}
    files |= {"e2e-1/odd/scan[1].dcm": odd, "e2e-1/notes/readme.dcm": b"not an image"}
    _upload(endpoints, files)
    # WHEN the pipeline runs THEN every valid instance reaches the store and is exported
    _wait(lambda: len(_exported(endpoints)) >= len(instances) + 1, "exports")
    assert sorted(_stored(endpoints)) == sorted([i.sop_uid for i in instances] + ["2.25.903"])
    assert _exported(endpoints) == _expected_exports(instances) | {"dicom/2.25.901/2.25.902/2.25.903.dcm"}
    # AND the bad file is on dicom-failed with its reason
    failed = {f["name"]: f["reason"] for f in read_journal(endpoints.journal("failed"))}
    assert failed["e2e-1/notes/readme.dcm"].startswith("not a DICOM Part 10 file")
    # AND far fewer imports than files, one result per batch
    assert len(_imports(endpoints)) <= 3 < len(files)
    _wait(lambda: len(read_journal(endpoints.journal("results"))) >= 1, "results")
    manifests = [
        b for b in storage_client(endpoints.storage_host).list_blobs(STATE_BUCKET) if b.name.endswith("manifest.json")
    ]
    results = read_journal(endpoints.journal("results"))
    assert sorted(r["batch_id"] for r in results) == sorted(m.name.split("/")[-2] for m in manifests)
    assert sum(r["files"] for r in results) == len(instances) + 1
    assert_counts_add_up(results)


def test_a_redelivered_finalize_event_and_a_killed_flush_lose_and_duplicate_nothing(
    stack: tuple[LocalStack, StackEndpoints],
) -> None:
    local, endpoints = stack
    before = set(_stored(endpoints))
    instances = generate_dataset(1, 2, 4, seed=911)
    # GIVEN the flush function process is killed (SIGKILL) and restarted while uploads arrive
    local.restart_function("on_flush")
    _upload(endpoints, {f"e2e-2/{i.relative_path}": i.data for i in instances})
    # AND one finalize notification is delivered twice
    blob = (
        storage_client(endpoints.storage_host).bucket(INCOMING_BUCKET).get_blob(f"e2e-2/{instances[0].relative_path}")
    )
    assert blob is not None
    created = blob.time_created.isoformat() if blob.time_created else None
    resource = {
        "bucket": INCOMING_BUCKET,
        "name": blob.name,
        "generation": str(blob.generation),
        "timeCreated": created,
    }
    publisher = pubsub_v1.PublisherClient()
    publisher.publish(
        publisher.topic_path(PROJECT, NOTIFICATIONS_TOPIC),
        json.dumps(resource).encode(),
        eventType="OBJECT_FINALIZE",
        bucketId=INCOMING_BUCKET,
        objectId=blob.name,
        objectGeneration=str(blob.generation),
        payloadFormat="JSON_API_V1",
    ).result(timeout=30)
    # THEN every instance arrives and is exported
    # a killed instance's leases run out after FLUSH_LEASE_SECONDS (30 s): allow for it
    _wait(lambda: _expected_exports(instances) <= _exported(endpoints), "exports of the second upload", timeout=300)
    assert set(_stored(endpoints)) == before | {i.sop_uid for i in instances}  # (the store keys on the UIDs)


def test_no_patient_data_in_any_log(stack: tuple[LocalStack, StackEndpoints]) -> None:
    _, endpoints = stack
    secrets: set[str] = set()
    for seed, shape in ((901, (2, 2, 5)), (911, (1, 2, 4))):
        for instance in generate_dataset(*shape, seed=seed):
            secrets |= {instance.patient_name, instance.patient_name.replace("^", " "), instance.patient_id,
                        instance.patient_birth_date}  # fmt: skip
    logs = list(Path(endpoints.data_dir, "logs").glob("*.log"))
    assert logs
    for log in logs:
        text = log.read_text(errors="replace")
        leaked = sorted(s for s in secrets if s in text)
        assert not leaked, f"{log.name} contains patient data: {leaked[:3]}"


def test_a_file_that_failed_every_import_is_requeued_and_imported(stack: tuple[LocalStack, StackEndpoints]) -> None:
    _, endpoints = stack
    instance = generate_dataset(1, 1, 1, seed=931)[0]
    name = "e2e-3/requeue-me.dcm"
    # GIVEN an import that fails this file on every attempt (MAX_ATTEMPTS=3), so it ends on dicom-failed
    faults = f"{endpoints.healthcare_url}/emulator/faults"
    requests.post(
        faults, json={"kind": "import-file", "object": "requeue-me", "count": 3}, timeout=10
    ).raise_for_status()
    _upload(endpoints, {name: instance.data})
    _wait(lambda: any(f.get("name") == name for f in read_journal(endpoints.journal("failed"))), "the failure")
    failure = next(f for f in read_journal(endpoints.journal("failed")) if f.get("name") == name)
    assert (failure["stage"], failure["attempt"]) == ("reconcile", 3)
    assert "injected import failure" in failure["reason"]
    assert instance.sop_uid not in _stored(endpoints)
    # WHEN it is requeued through the operator CLI (the cause is gone: the fault is used up)
    report = _devstack(endpoints, "requeue", "--stage", "reconcile", "--json")
    assert [(o["name"], o["result"]) for o in report["chosen"]] == [(name, "queued")]
    # THEN it is imported
    _wait(lambda: instance.sop_uid in _stored(endpoints), "the requeued file in the store")

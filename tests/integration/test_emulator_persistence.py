"""The store survives restarts (same --data-dir) and stays consistent under concurrent requests."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from google.cloud import storage

from devstack.processes import free_port, start_healthcare_emulator
from devstack.synthetic import generate_dataset
from healthcare_emulator.multipart import build_multipart_related
from tests.integration.conftest import StoreRef, upload

pytestmark = pytest.mark.integration

DATASET = "projects/p-restart/locations/us-central1/datasets/persist"
STORE = f"{DATASET}/dicomStores/s1"


def _stow(base: str, store: str, parts: list[bytes]) -> requests.Response:
    content_type, body = build_multipart_related([("application/dicom", p) for p in parts], "application/dicom")
    return requests.post(
        f"{base}/v1/{store}/dicomWeb/studies", data=body, headers={"Content-Type": content_type}, timeout=60
    )


def _sops(base: str, store: str) -> set[str]:
    found = requests.get(f"{base}/v1/{store}/dicomWeb/instances", timeout=30).json()
    return {item["00080018"]["Value"][0] for item in found}


def test_store_and_operations_survive_a_restart_and_interrupted_operations_end(
    tmp_path: Path, services: Any, bucket: storage.Bucket
) -> None:
    data_dir = tmp_path / "data"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    instances = generate_dataset(2, 2, 30, seed=401)
    upload(bucket, {i.relative_path: i.data for i in instances})

    # GIVEN an emulator with a dataset, a store, two STOW'd instances and a finished import
    first = start_healthcare_emulator(port, data_dir, services.storage_host, log_path=tmp_path / "1.log")
    try:
        requests.post(
            f"{base}/v1/projects/p-restart/locations/us-central1/datasets?datasetId=persist",
            json={},
            timeout=10,
        ).raise_for_status()
        requests.post(f"{base}/v1/{DATASET}/dicomStores?dicomStoreId=s1", json={}, timeout=10).raise_for_status()
        assert _stow(base, STORE, [instances[0].data, instances[1].data]).status_code == 200
        # AND an import that is killed while it may still run
        operation = requests.post(
            f"{base}/v1/{STORE}:import", json={"gcsSource": {"uri": f"gs://{bucket.name}/**"}}, timeout=10
        ).json()
    finally:
        first.process.kill()  # no graceful shutdown: like a crash
        first.process.wait()
        first.stop()

    # WHEN it restarts on the same data directory
    second = start_healthcare_emulator(port, data_dir, services.storage_host, log_path=tmp_path / "2.log")
    try:
        # THEN the dataset, the store and the STOW'd instances are there
        assert requests.get(f"{base}/v1/{STORE}", timeout=10).json()["name"] == STORE
        assert {instances[0].sop_uid, instances[1].sop_uid} <= _sops(base, STORE)
        # AND the interrupted operation is done: finished, or aborted with a message saying why
        final = requests.get(f"{base}/v1/{operation['name']}", timeout=10).json()
        assert final["done"] is True
        if "error" in final:
            assert final["error"]["code"] == 10
            assert "restart" in final["error"]["message"]
        else:
            assert _sops(base, STORE) == {i.sop_uid for i in instances}
        # AND every stored instance can be read back intact
        for sop in _sops(base, STORE):
            instance = next(i for i in instances if i.sop_uid == sop)
            url = (
                f"{base}/v1/{STORE}/dicomWeb/studies/{instance.study_uid}/series/{instance.series_uid}/instances/{sop}"
            )
            answer = requests.get(url, headers={"Accept": "application/dicom; transfer-syntax=*"}, timeout=10)
            assert answer.content == instance.data
    finally:
        second.stop()


def test_concurrent_stow_of_the_same_and_different_instances_stays_consistent(services: Any, store: StoreRef) -> None:
    base = services.healthcare_url
    instances = generate_dataset(1, 2, 20, seed=402)
    # every instance is sent 3 times, from 8 threads at once
    payloads = [i.data for i in instances] * 3
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda data: _stow(base, store.name, [data]), payloads))
    assert {a.status_code for a in answers} == {200}
    assert all("00081198" not in json.loads(a.content) for a in answers)
    assert _sops(base, store.name) == {i.sop_uid for i in instances}

"""The local stack restarted on the same --data-dir recovers what was in flight: files uploaded and queued
before the stop (their Pub/Sub messages died with the emulator) are imported once after the restart, a conflict
among them is reported, and the operator CLI sees them in the store."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from devstack.client import read_journal, storage_client
from devstack.stack import INCOMING_BUCKET, LocalStack, StackConfig, StackEndpoints
from devstack.synthetic import generate_dataset, make_instance
from healthcare_emulator.multipart import build_multipart_related

pytestmark = pytest.mark.e2e


def _config(data_dir: Path, settle_seconds: float) -> StackConfig:
    return StackConfig.on_free_ports(settle_seconds=settle_seconds, max_wait_seconds=max(settle_seconds, 10.0),
                                     flush_interval=1.0, data_dir=data_dir)  # fmt: skip


def _stored(endpoints: StackEndpoints) -> list[str]:
    response = requests.get(f"{endpoints.healthcare_url}/v1/{endpoints.store_name}/dicomWeb/instances", timeout=30)
    return [] if response.status_code == 204 else [i["00080018"]["Value"][0] for i in response.json()]


def test_a_restart_on_the_same_data_dir_imports_what_was_queued_before_the_stop(tmp_path: Path) -> None:
    data_dir = tmp_path / "stack"
    instances = generate_dataset(1, 2, 3, seed=961)
    [stored] = generate_dataset(1, 1, 1, seed=964)
    conflicting = make_instance(study_uid=stored.study_uid, series_uid=stored.series_uid, sop_uid=stored.sop_uid,
                                seed=965, SeriesDescription="CORRECTED")  # fmt: skip
    # GIVEN a stack whose folders never settle (an hour), and an upload that intake queued, with a file whose
    # UIDs the store holds with other content (the soak's lost conflict, 2026-12-07)
    first = LocalStack(_config(data_dir, settle_seconds=3600))
    endpoints = first.start()
    try:
        content_type, body = build_multipart_related([("application/dicom", stored.data)], "application/dicom")
        requests.post(f"{endpoints.healthcare_url}/v1/{endpoints.store_name}/dicomWeb/studies", data=body,
                      headers={"Content-Type": content_type}, timeout=60).raise_for_status()  # fmt: skip
        bucket = storage_client(endpoints.storage_host).bucket(INCOMING_BUCKET)
        for instance in instances:
            bucket.blob(f"before-crash/{instance.relative_path}").upload_from_string(instance.data)
        bucket.blob("overwritten/IM1.dcm").upload_from_string(conflicting)
        intake_log = endpoints.data_dir / "logs" / "on_object_finalized.log"
        deadline = time.monotonic() + 60
        while intake_log.read_text().count("object queued for import") < len(instances) + 1:
            assert time.monotonic() < deadline, "intake never queued the upload"
            time.sleep(0.5)
        assert _stored(endpoints) == [stored.sop_uid]
    finally:
        first.stop()  # the Pub/Sub emulator's pending records are gone with it
    # WHEN the stack starts again on the same --data-dir
    second = LocalStack(_config(data_dir, settle_seconds=1))
    endpoints = second.start()
    try:
        assert second.recovered.wait(120), "recovery did not finish"
        deadline = time.monotonic() + 120
        while len(_stored(endpoints)) < len(instances) + 1:
            assert time.monotonic() < deadline, "the recovered files were not imported"
            time.sleep(1)
        # THEN each instance is in the store exactly once, and `dicomflow verify` agrees
        assert sorted(_stored(endpoints)) == sorted(i.sop_uid for i in [*instances, stored])
        # AND the conflicting file, whose record died with the emulator, is reported a conflict
        failed = lambda: [f for f in read_journal(endpoints.journal("failed")) if f["name"] == "overwritten/IM1.dcm"]  # noqa: E731
        _wait("the conflict queued before the stop was never reported", failed)
        assert [f["stage"] for f in failed()] == ["conflict"]
        argv = [sys.executable, "-m", "dicomflow.cli", "--env-file", str(data_dir / "dicomflow.env"), "verify",
                f"gs://{INCOMING_BUCKET}/before-crash/", "--json"]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["counts"] == {"in store": len(instances)}
    finally:
        second.stop()


def _wait(what: str, condition: Any, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.5)


def test_a_restart_follows_up_the_import_it_interrupted_so_a_conflict_in_it_is_reported(tmp_path: Path) -> None:
    # the soak's two lost files (bench.soak, 2026-12-06): conflicts in a batch whose watch died with the Pub/Sub
    # emulator; their UIDs are in the store, so the backfill queues nothing, and only a watch reports them
    data_dir = tmp_path / "stack"
    [original] = generate_dataset(1, 1, 1, seed=962)
    corrected = make_instance(study_uid=original.study_uid, series_uid=original.series_uid,
                              sop_uid=original.sop_uid, seed=963, SeriesDescription="CORRECTED")  # fmt: skip
    first = LocalStack(_config(data_dir, settle_seconds=1))
    endpoints = first.start()
    try:
        bucket = storage_client(endpoints.storage_host).bucket(INCOMING_BUCKET)
        bucket.blob("first/IM1.dcm").upload_from_string(original.data)
        _wait("the original was not imported", lambda: _stored(endpoints) == [original.sop_uid])
        _wait("the original's batch was not reported", lambda: read_journal(endpoints.journal("results")))
        # GIVEN the conflicting re-send in a batch whose import the emulator holds (started, never ending)
        hold = {"kind": "operation-delay", "operation": "ImportDicomData", "seconds": 600, "count": 1}
        requests.post(f"{endpoints.healthcare_url}/emulator/faults", json=hold, timeout=10).raise_for_status()
        bucket.blob("second/IM1.dcm").upload_from_string(corrected)
        batches = endpoints.data_dir / "logs" / "on_flush.log"
        _wait("the re-send's import did not start", lambda: batches.read_text().count("import started") >= 2)
    finally:
        first.stop()  # the import's watch is gone with the Pub/Sub emulator; the emulator aborts the import
    # WHEN the stack starts again on the same --data-dir
    second = LocalStack(_config(data_dir, settle_seconds=1))
    endpoints = second.start()
    try:
        assert second.recovered.wait(120), "recovery did not finish"
        # THEN the interrupted batch is followed up: the re-send is reported a conflict, the original stays
        failed = lambda: [f for f in read_journal(endpoints.journal("failed")) if f["name"] == "second/IM1.dcm"]  # noqa: E731
        _wait("the conflict was never reported", failed)
        assert [f["stage"] for f in failed()] == ["conflict"]
        assert _stored(endpoints) == [original.sop_uid]
    finally:
        second.stop()

"""Intake: finalize events per second through ``on_object_finalized`` (functions-framework app in process, real
publisher against the Pub/Sub emulator, header sniffing against fake-gcs-server), p50/p99 per event, and bytes
read per file against file size — side by side with a naive handler that downloads the whole object.

    python -m bench.intake [--events 300]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pydicom
from functions_framework import create_app
from google.cloud import pubsub_v1

from devstack.client import storage_client
from devstack.processes import free_port, start_fake_gcs, start_pubsub_emulator
from devstack.synthetic import generate_dataset, make_instance
from handlers import runtime as runtime_module

MAIN = str(Path(__file__).resolve().parents[1] / "main.py")
BUCKET = "bench-intake"


def _event(bucket: Any, name: str) -> tuple[dict[str, str], str]:
    blob = bucket.get_blob(name)
    resource = {"bucket": BUCKET, "name": name, "generation": str(blob.generation), "size": str(blob.size),
                "timeCreated": blob.time_created.isoformat()}  # fmt: skip
    event = {"specversion": "1.0", "type": "google.cloud.storage.object.v1.finalized", "id": uuid.uuid4().hex,
             "source": "//storage.googleapis.com/bench", "data": resource}  # fmt: skip
    return {"Content-Type": "application/cloudevents+json"}, json.dumps(event)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=300)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-intake-"):
        pubsub_port, gcs_port = free_port(), free_port()
        pubsub = start_pubsub_emulator(pubsub_port)
        os.environ["PUBSUB_EMULATOR_HOST"] = f"127.0.0.1:{pubsub_port}"
        gcs = start_fake_gcs(gcs_port)
        try:
            return _run(args.events, f"http://127.0.0.1:{gcs_port}")
        finally:
            gcs.stop()
            pubsub.stop()


def _run(events: int, storage_host: str) -> int:
    publisher = pubsub_v1.PublisherClient()
    for topic in ("dicom-pending", "dicom-failed"):
        publisher.create_topic(request={"name": publisher.topic_path("bench-project", topic)})
    os.environ.update({
        "PROJECT_ID": "bench-project", "LOCATION": "us-central1", "DATASET": "d", "DICOM_STORE": "s",
        "SOURCE_BUCKETS": BUCKET, "STATE_BUCKET": BUCKET, "STORAGE_EMULATOR_HOST": storage_host, "LOG_LEVEL": "WARNING",
        "HEALTHCARE_API_ENDPOINT": "http://127.0.0.1:9",
    })  # fmt: skip
    runtime_module.reset()
    client = storage_client(storage_host)
    bucket = client.create_bucket(BUCKET)
    instances = generate_dataset(max(1, events // 40), 4, 10, seed=3)[:events]
    for instance in instances:
        bucket.blob(f"in/{instance.relative_path}").upload_from_string(instance.data)
    large = make_instance(study_uid="2.25.1", series_uid="2.25.2", sop_uid="2.25.3", rows=1024, columns=1024, frames=24)
    bucket.blob("in/large.dcm").upload_from_string(large)

    app = create_app("on_object_finalized", MAIN, "cloudevent").test_client()
    store = runtime_module.runtime("on_object_finalized").store
    read_bytes: list[int] = []
    original = store.read_range

    def counting(bucket_name: str, name: str, generation: str | None, start: int, end: int) -> bytes:
        data = original(bucket_name, name, generation, start, end)
        read_bytes.append(len(data))
        return data

    store.read_range = counting  # type: ignore[method-assign,assignment]
    requests = [_event(bucket, f"in/{i.relative_path}") for i in instances]
    latencies: list[float] = []
    started = time.perf_counter()
    for headers, body in requests:
        begin = time.perf_counter()
        assert app.post("/", headers=headers, data=body).status_code == 200
        latencies.append(time.perf_counter() - begin)
    elapsed = time.perf_counter() - started
    small_read = sum(read_bytes) / len(instances)
    read_bytes.clear()
    begin = time.perf_counter()
    assert (
        app.post("/", headers=_event(bucket, "in/large.dcm")[0], data=_event(bucket, "in/large.dcm")[1]).status_code
        == 200
    )
    large_seconds = time.perf_counter() - begin
    large_read = sum(read_bytes)

    naive: list[float] = []
    for instance in instances[:50]:
        begin = time.perf_counter()
        data = bucket.blob(f"in/{instance.relative_path}").download_as_bytes()
        pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        naive.append(time.perf_counter() - begin)
    begin = time.perf_counter()
    data = bucket.blob("in/large.dcm").download_as_bytes()
    pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    naive_large = time.perf_counter() - begin

    quantiles = statistics.quantiles(latencies, n=100)
    size = sum(len(i.data) for i in instances) / len(instances)
    print(f"\nIntake — {len(instances)} finalize events, {platform.machine()}, Python {platform.python_version()}")
    p50, p99 = quantiles[49] * 1000, quantiles[98] * 1000
    print(f"events/s: {len(instances) / elapsed:.0f}   p50 {p50:.1f} ms   p99 {p99:.1f} ms")
    print(f"{'file':<34}{'size':>12}{'read by intake':>16}{'intake s':>10}{'naive read':>12}{'naive s':>9}")
    print(f"{'small instance (mean)':<34}{size:>12.0f}{small_read:>16.0f}{statistics.median(latencies):>10.3f}"
          f"{size:>12.0f}{statistics.median(naive):>9.3f}")  # fmt: skip
    print(f"{'24-frame 1024x1024 (48 MiB)':<34}{len(large):>12}{large_read:>16}{large_seconds:>10.3f}"
          f"{len(large):>12}{naive_large:>9.3f}")  # fmt: skip
    print(f"\nthe large file costs intake {large_read / len(large):.4%} of its bytes "
          f"({len(large) / max(large_read, 1):.0f}x less than downloading it)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

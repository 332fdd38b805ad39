"""Intake: finalize events per second through ``on_object_finalized`` (real publisher against the Pub/Sub emulator,
header sniffing against fake-gcs-server), p50/p99 per event:

- serially in process (functions-framework's ``create_app``), and bytes read per file against file size, side by
  side with a naive handler that downloads the whole object;
- into one functions-framework process (gunicorn, ``THREADS`` request threads, as Cloud Functions gen2 runs it)
  with 1, 8, 32 and 64 deliveries at once: events/s per instance, p50/p99, the process's CPU per event, and
  every event's record counted on the pending topic (none lost, none doubled); then 64 at once into an
  instance with ``WORKERS`` worker processes (one per vCPU).

    python -m bench.intake [--events 640] [--threads 64] [--workers 2]
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import platform
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pydicom
from functions_framework import create_app
from google.cloud import pubsub_v1

from devstack.client import storage_client
from devstack.processes import ManagedProcess, free_port, start_fake_gcs, start_function, start_pubsub_emulator
from devstack.synthetic import generate_dataset, make_instance
from handlers import runtime as runtime_module

MAIN = str(Path(__file__).resolve().parents[1] / "main.py")
BUCKET = "bench-intake"
PROJECT = "bench-project"
CONCURRENCY = (1, 8, 32, 64)
COUNTER = "bench-pending-count"


@dataclass(frozen=True)
class Level:
    name: str
    events: int
    seconds: float
    latencies: list[float]
    cpu_seconds: float | None = None
    queued: int | None = None
    machine_busy: float | None = None  # share of every core of this machine busy during the row

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    def quantile(self, q: int) -> float:
        return statistics.quantiles(self.latencies, n=100)[q - 1] * 1000


def _resource(bucket: Any, name: str) -> dict[str, str]:
    blob = bucket.get_blob(name)
    return {"bucket": BUCKET, "name": name, "generation": str(blob.generation), "size": str(blob.size),
            "timeCreated": blob.time_created.isoformat()}  # fmt: skip


def _body(resource: dict[str, str]) -> str:
    event = {"specversion": "1.0", "type": "google.cloud.storage.object.v1.finalized", "id": uuid.uuid4().hex,
             "source": "//storage.googleapis.com/bench", "data": resource}  # fmt: skip
    return json.dumps(event)


HEADERS = {"Content-Type": "application/cloudevents+json"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=640, help="events per concurrency level (default 640)")
    parser.add_argument("--threads", type=int, default=64, help="THREADS of the functions-framework process (64)")
    parser.add_argument("--workers", type=int, default=2, help="WORKERS of an extra 64-at-once row (2; 1: none)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-intake-") as tmp:
        pubsub_port, gcs_port = free_port(), free_port()
        pubsub = start_pubsub_emulator(pubsub_port)
        os.environ["PUBSUB_EMULATOR_HOST"] = f"127.0.0.1:{pubsub_port}"
        gcs = start_fake_gcs(gcs_port)
        try:
            return _run(args.events, args.threads, args.workers, f"http://127.0.0.1:{gcs_port}", Path(tmp))
        finally:
            gcs.stop()
            pubsub.stop()


def _environment(storage_host: str) -> dict[str, str]:
    return {
        "PROJECT_ID": PROJECT, "LOCATION": "us-central1", "DATASET": "d", "DICOM_STORE": "s",
        "SOURCE_BUCKETS": BUCKET, "STATE_BUCKET": BUCKET, "STORAGE_EMULATOR_HOST": storage_host, "LOG_LEVEL": "WARNING",
        "HEALTHCARE_API_ENDPOINT": "http://127.0.0.1:9", "PUBSUB_EMULATOR_HOST": os.environ["PUBSUB_EMULATOR_HOST"],
    }  # fmt: skip


def _run(events: int, threads: int, workers: int, storage_host: str, tmp: Path) -> int:
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    for topic in ("dicom-pending", "dicom-failed"):
        publisher.create_topic(request={"name": publisher.topic_path(PROJECT, topic)})
    subscriber.create_subscription(request={"name": subscriber.subscription_path(PROJECT, COUNTER),
                                            "topic": publisher.topic_path(PROJECT, "dicom-pending")})  # fmt: skip
    env = _environment(storage_host)
    os.environ.update(env)
    runtime_module.reset()
    bucket = storage_client(storage_host).create_bucket(BUCKET)
    instances = generate_dataset(max(1, events // 40), 4, 10, seed=3)[:events]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: bucket.blob(f"in/{i.relative_path}").upload_from_string(i.data), instances))
    large = make_instance(study_uid="2.25.1", series_uid="2.25.2", sop_uid="2.25.3", rows=1024, columns=1024, frames=24)
    bucket.blob("in/large.dcm").upload_from_string(large)
    resources = [_resource(bucket, f"in/{i.relative_path}") for i in instances]

    serial, read_report = _in_process(bucket, resources, instances, large)
    _drain(subscriber)
    port = free_port()
    process = start_function("on_object_finalized", port, {**env, "THREADS": str(threads)},
                             log_path=tmp / "on_object_finalized.log")  # fmt: skip
    try:
        levels = [_over_http(process, port, resources, concurrency, subscriber) for concurrency in CONCURRENCY]
    finally:
        process.stop()
    if workers > 1:  # the same instance with one worker process per vCPU (gunicorn WORKERS), threads split
        port = free_port()
        process = start_function("on_object_finalized", port,
                                 {**env, "WORKERS": str(workers), "THREADS": str(threads // workers)},
                                 log_path=tmp / "on_object_finalized-workers.log")  # fmt: skip
        try:
            level = _over_http(process, port, resources, CONCURRENCY[-1], subscriber)
            levels.append(replace(level, name=f"{level.name}, WORKERS={workers}"))
        finally:
            process.stop()
    _print(serial, levels, threads, len(instances))
    print(read_report)
    return 0


def _in_process(
    bucket: Any, resources: list[dict[str, str]], instances: Sequence[Any], large: bytes
) -> tuple[Level, str]:
    """The serial run in this process (create_app's test client), and what intake reads of a small and a large
    file against downloading them."""
    app = create_app("on_object_finalized", MAIN, "cloudevent").test_client()
    store = runtime_module.runtime("on_object_finalized").store
    read_bytes: list[int] = []
    original = store.read_range

    def counting(bucket_name: str, name: str, generation: str | None, start: int, end: int) -> bytes:
        data = original(bucket_name, name, generation, start, end)
        read_bytes.append(len(data))
        return data

    store.read_range = counting  # type: ignore[method-assign,assignment]
    latencies: list[float] = []
    started = time.perf_counter()
    for resource in resources:
        begin = time.perf_counter()
        assert app.post("/", headers=HEADERS, data=_body(resource)).status_code == 200
        latencies.append(time.perf_counter() - begin)
    serial = Level("in process, one at a time", len(resources), time.perf_counter() - started, latencies)
    small_read = sum(read_bytes) / len(resources)
    read_bytes.clear()
    begin = time.perf_counter()
    assert app.post("/", headers=HEADERS, data=_body(_resource(bucket, "in/large.dcm"))).status_code == 200
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
    size = sum(len(i.data) for i in instances) / len(instances)
    lines = [
        f"\n{'file':<34}{'size':>12}{'read by intake':>16}{'intake s':>10}{'naive read':>12}{'naive s':>9}",
        f"{'small instance (mean)':<34}{size:>12.0f}{small_read:>16.0f}{statistics.median(latencies):>10.3f}"
        f"{size:>12.0f}{statistics.median(naive):>9.3f}",
        f"{'24-frame 1024x1024 (48 MiB)':<34}{len(large):>12}{large_read:>16}{large_seconds:>10.3f}"
        f"{len(large):>12}{naive_large:>9.3f}",
        f"\nthe large file costs intake {large_read / len(large):.4%} of its bytes "
        f"({len(large) / max(large_read, 1):.0f}x less than downloading it)",
    ]
    return serial, "\n".join(lines)


def _cpu_seconds(process: ManagedProcess) -> float:
    """User + system CPU of every process in the server's process group (gunicorn's arbiter and its worker)."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == process.pid:  # fields[2] is the process group id
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _machine_jiffies() -> tuple[int, int]:
    """(busy, total) CPU jiffies of this machine, every core (``/proc/stat``)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def _over_http(
    process: ManagedProcess, port: int, resources: list[dict[str, str]], concurrency: int, subscriber: Any
) -> Level:
    """Every resource's event posted to the server, ``concurrency`` at once (one keep-alive connection each)."""
    local = threading.local()

    def send(body: str) -> int:
        if not hasattr(local, "connection"):
            local.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        local.connection.request("POST", "/", body=body, headers=HEADERS)
        response = local.connection.getresponse()
        response.read()
        return int(response.status)

    def post(body: str) -> float:
        begin = time.perf_counter()
        try:
            status = send(body)
        except (ConnectionError, http.client.HTTPException):  # the server closed an idle keep-alive connection
            del local.connection
            begin = time.perf_counter()
            status = send(body)
        assert status == 200, f"HTTP {status}"
        return time.perf_counter() - begin

    bodies = [_body(r) for r in resources]
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(post, bodies[: concurrency * 2]))  # warm-up: runtime built, connections open
        _drain(subscriber)
        cpu, (busy, total) = _cpu_seconds(process), _machine_jiffies()
        started = time.perf_counter()
        latencies = list(pool.map(post, bodies))
        elapsed = time.perf_counter() - started
        cpu = _cpu_seconds(process) - cpu
        busy_after, total_after = _machine_jiffies()
    queued = _drain(subscriber)
    machine = (busy_after - busy) / max(total_after - total, 1)
    return Level(f"HTTP, {concurrency} at once", len(bodies), elapsed, latencies, cpu, queued, machine)


def _drain(subscriber: Any, quiet_seconds: float = 2.0) -> int:
    """Pull and acknowledge the pending topic's records until none arrives for ``quiet_seconds``; how many."""
    path = subscriber.subscription_path(PROJECT, COUNTER)
    seen: set[str] = set()
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < quiet_seconds:
        response = subscriber.pull(request={"subscription": path, "max_messages": 1000, "return_immediately": True},
                                   timeout=30)  # fmt: skip
        if not response.received_messages:
            time.sleep(0.1)
            continue
        quiet_since = time.monotonic()
        ack_ids = [m.ack_id for m in response.received_messages]
        subscriber.acknowledge(request={"subscription": path, "ack_ids": ack_ids})
        seen.update(m.message.message_id for m in response.received_messages)
    return len(seen)


def _print(serial: Level, levels: list[Level], threads: int, events: int) -> None:
    print(f"\nIntake — {events} finalize events per row, {platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}; HTTP rows: one functions-framework process, "
          f"THREADS={threads}")  # fmt: skip
    base = levels[0].rate
    print(f"{'delivery':<28}{'events/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'CPU ms/event':>14}{'machine busy':>14}"
          f"{'queued':>8}{'vs 1 at once':>14}")  # fmt: skip
    for level in [serial, *levels]:
        cpu = f"{1000 * level.cpu_seconds / level.events:.1f}" if level.cpu_seconds is not None else "-"
        busy = f"{level.machine_busy:.0%}" if level.machine_busy is not None else "-"
        queued = f"{level.queued}" if level.queued is not None else "-"
        ratio = f"{level.rate / base:.1f}x" if level is not serial else "-"
        print(f"{level.name:<28}{level.rate:>10.0f}{level.quantile(50):>9.1f}{level.quantile(99):>9.1f}{cpu:>14}"
              f"{busy:>14}{queued:>8}{ratio:>14}")  # fmt: skip
    print("CPU ms/event: the function process only; machine busy: all cores, emulators and this client included")


if __name__ == "__main__":
    raise SystemExit(main())

"""The local stack: every Google service of the pipeline with a real stand-in, wired as in production.

Pub/Sub emulator  <- topics dicom-pending, dicom-operations, dicom-results, dicom-failed, gcs-notifications
fake-gcs-server   -> finalize notifications on gcs-notifications -> push -> on_object_finalized
healthcare_emulator (dataset local-dataset, store local-store)
on_object_finalized, on_flush, on_operation: one functions-framework process each
a flush timer (Cloud Scheduler's stand-in) and a journal of dicom-results / dicom-failed
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import os
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.cloud import pubsub_v1

from devstack import wiring
from devstack.processes import (
    ManagedProcess,
    StackError,
    port_in_use,
    start_fake_gcs,
    start_function,
    start_healthcare_emulator,
    start_pubsub_emulator,
)
from devstack.wiring import DATASET, LOCATION, PROJECT, STORE

INCOMING_BUCKET = "dicom-incoming"
EXPORT_BUCKET = "dicom-exports"
STATE_BUCKET = "dicomflow-state"
NOTIFICATIONS_TOPIC = "gcs-notifications"
TOPICS = ("dicom-pending", "dicom-operations", "dicom-results", "dicom-failed", "dicom-operations-dead")
FUNCTIONS = ("on_object_finalized", "on_flush", "on_operation")


@dataclass(frozen=True)
class StackConfig:
    gcs_port: int = 4443
    pubsub_port: int = 8085
    healthcare_port: int = 8089
    functions_port: int = 8080  # first of three
    settle_seconds: float = 5.0
    max_wait_seconds: float = 60.0
    flush_interval: float = 5.0
    data_dir: Path | None = None
    export_targets: str = json.dumps([{"name": "dicom", "gcs": f"gs://{EXPORT_BUCKET}/dicom"}])
    extra_env: tuple[tuple[str, str], ...] = ()
    emulator_faults: Path | None = None  # fault rules for healthcare_emulator (see healthcare_emulator/faults.py)
    fault_seed: int | None = None

    def ports(self) -> dict[str, int]:
        return {
            "Pub/Sub emulator": self.pubsub_port, "fake-gcs-server": self.gcs_port,
            "healthcare_emulator": self.healthcare_port,
            **{name: self.functions_port + index for index, name in enumerate(FUNCTIONS)},
        }  # fmt: skip


@dataclass(frozen=True)
class StackEndpoints:
    storage_host: str
    pubsub_host: str
    healthcare_url: str
    functions: dict[str, str]
    data_dir: Path

    @property
    def store_name(self) -> str:
        return f"projects/{PROJECT}/locations/{LOCATION}/datasets/{DATASET}/dicomStores/{STORE}"

    def environment(self) -> dict[str, str]:
        """What a user exports to point clients (google-cloud-*, gcloud) at the stack."""
        return {
            "STORAGE_EMULATOR_HOST": self.storage_host,
            "PUBSUB_EMULATOR_HOST": self.pubsub_host,
            "CLOUDSDK_API_ENDPOINT_OVERRIDES_HEALTHCARE": f"{self.healthcare_url}/",
            "CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE": f"{self.storage_host}/storage/v1/",
            "CLOUDSDK_AUTH_DISABLE_CREDENTIALS": "true",
            "CLOUDSDK_CORE_PROJECT": PROJECT,
        }

    def journal(self, name: str) -> Path:
        return self.data_dir / f"{name}.jsonl"


def function_environment(
    config: StackConfig, endpoints_storage: str, pubsub_host: str, healthcare_url: str
) -> dict[str, str]:
    return {
        "PROJECT_ID": PROJECT, "LOCATION": LOCATION, "DATASET": DATASET, "DICOM_STORE": STORE,
        "SOURCE_BUCKETS": INCOMING_BUCKET, "STATE_BUCKET": STATE_BUCKET, "EXPORT_TARGETS": config.export_targets,
        "SETTLE_SECONDS": str(config.settle_seconds), "MAX_WAIT_SECONDS": str(config.max_wait_seconds),
        "FLUSH_RUN_SECONDS": str(flush_run_seconds(config.flush_interval)),
        "HEALTHCARE_API_ENDPOINT": healthcare_url, "STORAGE_EMULATOR_HOST": endpoints_storage,
        "PUBSUB_EMULATOR_HOST": pubsub_host, **dict(config.extra_env),
    }  # fmt: skip


def flush_run_seconds(interval: float) -> int:
    """How long each flush invocation works, as deployed (55 s of a 60 s tick): the tick minus a twelfth of it,
    at least one second for the hand-over; 0 (one pass) for ticks of a second."""
    return int(max(0.0, interval - max(1.0, interval / 12)))


class LocalStack:
    """``start()`` brings everything up (or raises StackError having stopped what it started); ``stop()`` ends
    every process it started, by PID."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self._exit = ExitStack()
        self.processes: dict[str, ManagedProcess] = {}
        self.endpoints: StackEndpoints | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._env: dict[str, str] = {}
        self._logs = Path()
        self._previous_pubsub_host: str | None = None
        self._data_dir = Path()

    def start(self) -> StackEndpoints:
        config = self.config
        busy = [f"port {port} for {name}" for name, port in config.ports().items() if port_in_use(port)]
        if busy:
            raise StackError("already in use: " + ", ".join(busy) + " (stop what uses it or choose other ports)")
        data_dir = config.data_dir or Path(self._exit.enter_context(tempfile.TemporaryDirectory(prefix="dicomflow-")))
        data_dir.mkdir(parents=True, exist_ok=True)
        self._logs = data_dir / "logs"
        self._logs.mkdir(exist_ok=True)
        try:
            return self._start(data_dir)
        except BaseException:
            self.stop()
            raise

    def _start(self, data_dir: Path) -> StackEndpoints:
        config = self.config
        pubsub_host = f"127.0.0.1:{config.pubsub_port}"
        self.processes["pubsub"] = start_pubsub_emulator(config.pubsub_port, log_path=self._logs / "pubsub.log")
        self._previous_pubsub_host = os.environ.get("PUBSUB_EMULATOR_HOST")
        os.environ["PUBSUB_EMULATOR_HOST"] = pubsub_host  # this process's clients talk to the emulator
        wiring.create_topics([*TOPICS, NOTIFICATIONS_TOPIC])  # before fake-gcs publishes, else events are lost
        storage_host = f"http://127.0.0.1:{config.gcs_port}"
        self.processes["gcs"] = start_fake_gcs(
            config.gcs_port, log_path=self._logs / "fake-gcs.log", root=data_dir / "gcs",
            pubsub=(pubsub_host, PROJECT, NOTIFICATIONS_TOPIC),
        )  # fmt: skip
        healthcare_url = f"http://127.0.0.1:{config.healthcare_port}"
        self._data_dir = data_dir
        self.processes["healthcare"] = self._start_emulator()
        self._env = function_environment(config, storage_host, pubsub_host, healthcare_url)
        functions = {}
        for index, target in enumerate(FUNCTIONS):
            port = config.functions_port + index
            self.processes[target] = start_function(target, port, self._env, log_path=self._logs / f"{target}.log")
            functions[target] = f"http://127.0.0.1:{port}"
        wiring.create_buckets(storage_host, [INCOMING_BUCKET, EXPORT_BUCKET, STATE_BUCKET])
        wiring.create_store(healthcare_url)
        wiring.create_subscriptions(functions)
        self.endpoints = StackEndpoints(storage_host, pubsub_host, healthcare_url, functions, data_dir)
        self._start_thread("flush-timer", self._flush_timer)
        self._start_thread("operations-relay", self._relay_operations)
        self._start_thread("journal", self._journal)
        return self.endpoints

    def _start_emulator(self) -> ManagedProcess:
        config = self.config
        return start_healthcare_emulator(
            config.healthcare_port, self._data_dir / "healthcare", f"http://127.0.0.1:{config.gcs_port}",
            log_path=self._logs / "healthcare.log", faults=config.emulator_faults, fault_seed=config.fault_seed,
        )  # fmt: skip

    def restart_emulator(self) -> None:
        """Kill healthcare_emulator (SIGKILL) and start it again on the same port and data directory."""
        self.processes["healthcare"].kill()
        self.processes["healthcare"] = self._start_emulator()

    def restart_function(self, target: str) -> None:
        """Kill a function process (SIGKILL, as a crashed instance) and start a new one on the same port."""
        self.processes[target].kill()
        port = self.config.functions_port + FUNCTIONS.index(target)
        self.processes[target] = start_function(target, port, self._env, log_path=self._logs / f"{target}.log")

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        for process in reversed(list(self.processes.values())):
            process.stop()
        self.processes.clear()
        self._exit.close()
        if self._previous_pubsub_host is None:
            os.environ.pop("PUBSUB_EMULATOR_HOST", None)
        else:
            os.environ["PUBSUB_EMULATOR_HOST"] = self._previous_pubsub_host

    def _start_thread(self, name: str, target: Any) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _flush_timer(self) -> None:
        """Cloud Scheduler's stand-in: a tick to on_flush at start and then every ``flush_interval`` seconds on a
        fixed schedule; a tick that comes while the last invocation still runs is skipped (one flush at once)."""
        assert self.endpoints is not None
        url = self.endpoints.functions["on_flush"]
        interval, due = self.config.flush_interval, time.monotonic()
        while not self._stop.wait(max(0.0, due - time.monotonic())):
            late = time.monotonic() - due
            due += interval * (1 + math.floor(late / interval))
            if late > min(1.0, interval / 2):  # the last invocation ran into this tick: skipped
                continue
            tick = {"message": {"data": "", "messageId": uuid.uuid4().hex}, "subscription": "flush-ticks"}
            request = urllib.request.Request(url, data=json.dumps(tick).encode(), method="POST",
                                             headers={"Content-Type": "application/json"})  # fmt: skip
            with contextlib.suppress(urllib.error.URLError, OSError):  # the next tick retries, as with Scheduler
                urllib.request.urlopen(request, timeout=300).close()

    def _relay_operations(self) -> None:
        """The push subscription on dicom-operations, as deployed: deliver each watch to on_operation; a non-2xx
        answer means "again later" (redelivered after min(2^n, 5) s); after 100 attempts -> dead-letter topic."""
        assert self.endpoints is not None
        url = self.endpoints.functions["on_operation"]
        subscriber, publisher = pubsub_v1.SubscriberClient(), pubsub_v1.PublisherClient()
        path = subscriber.subscription_path(PROJECT, wiring.OPERATIONS_RELAY)
        attempts: dict[str, int] = {}
        while not self._stop.is_set():
            try:
                response = subscriber.pull(request={"subscription": path, "max_messages": 50}, timeout=2)
            except Exception:
                self._stop.wait(0.5)
                continue
            for received in response.received_messages:
                message = received.message
                envelope = {"message": {"data": base64.b64encode(message.data).decode(),
                                        "attributes": dict(message.attributes), "messageId": message.message_id},
                            "subscription": path}  # fmt: skip
                request = urllib.request.Request(url, data=json.dumps(envelope).encode(), method="POST",
                                                 headers={"Content-Type": "application/json"})  # fmt: skip
                try:
                    urllib.request.urlopen(request, timeout=300).close()
                    delivered = True
                except (urllib.error.URLError, OSError):
                    delivered = False
                count = attempts[message.message_id] = attempts.get(message.message_id, 0) + 1
                if delivered or count >= 100:
                    if not delivered:
                        publisher.publish(publisher.topic_path(PROJECT, "dicom-operations-dead"), message.data,
                                          **dict(message.attributes)).result(timeout=30)  # fmt: skip
                    subscriber.acknowledge(request={"subscription": path, "ack_ids": [received.ack_id]})
                    attempts.pop(message.message_id, None)
                else:
                    backoff = min(2 ** (count - 1), 5)
                    subscriber.modify_ack_deadline(
                        request={"subscription": path, "ack_ids": [received.ack_id], "ack_deadline_seconds": backoff}
                    )

    def _journal(self) -> None:
        """Keep every dicom-results and dicom-failed message in data_dir/*.jsonl for `status` and the demo."""
        assert self.endpoints is not None
        while not self._stop.wait(0.5):
            for name in ("results", "failed"):
                for message in wiring.drain(f"devstack-{name}"):
                    with self.endpoints.journal(name).open("a", encoding="utf-8") as journal:
                        journal.write(json.dumps(message) + "\n")

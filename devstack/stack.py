"""The local stack: every Google service of the pipeline with a real stand-in, wired as in production.

Pub/Sub emulator  <- topics dicom-pending, dicom-operations, dicom-results, dicom-failed, gcs-notifications
fake-gcs-server   -> finalize notifications on gcs-notifications -> relay (source buckets only) -> intake
healthcare_emulator (dataset local-dataset, store local-store)
on_object_finalized, on_flush, on_operation: one functions-framework process each
a flush timer (Cloud Scheduler's stand-in), a journal of dicom-results / dicom-failed, and a supervisor that
restarts what dies (Cloud Run's stand-in) or, when a stand-in that cannot be restarted safely dies, says why
in ``failure``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack import wiring
from devstack.latency_proxy import LatencyProxy
from devstack.processes import (
    ManagedProcess,
    StackError,
    free_ports,
    port_in_use,
    start_fake_gcs,
    start_function,
    start_healthcare_emulator,
    start_pubsub_emulator,
    wait_port_free,
)
from devstack.recovery import recover, write_env_file
from devstack.relay import Accept, PushRoute, relay
from devstack.supervise import RestartBudget, describe_exit, exit_fields
from devstack.timing import PROFILES, TimingProfile
from devstack.wiring import DATASET, LOCATION, PROJECT, RESEARCH_DATASET, RESEARCH_STORE, STORE

log = logging.getLogger(__name__)

INCOMING_BUCKET = "dicom-incoming"
EXPORT_BUCKET = "dicom-exports"
STATE_BUCKET = "dicomflow-state"
RESEARCH_STORE_NAME = (
    f"projects/{PROJECT}/locations/{LOCATION}/datasets/{RESEARCH_DATASET}/dicomStores/{RESEARCH_STORE}"
)
RESEARCH_TARGET = {  # every batch also lands, de-identified, in the research store (`make run`'s demo)
    "name": "research",
    "deidentify": {
        "store": RESEARCH_STORE_NAME,
        "config": {"dicom": {"filterProfile": "ATTRIBUTE_CONFIDENTIALITY_BASIC_PROFILE"}},
    },
}
NOTIFICATIONS_TOPIC = "gcs-notifications"
TOPICS = (
    "dicom-pending",
    "dicom-operations",
    "dicom-results",
    "dicom-failed",
    "dicom-operations-dead",
    "dicom-pending-dead-letter",
)
FUNCTIONS = ("on_object_finalized", "on_flush", "on_operation")
# stand-ins whose death ends the stack, and why they are not restarted
NOT_RESTARTED = {
    "pubsub": "the Pub/Sub emulator keeps topics, subscriptions and messages in memory only, so pending records "
    "and watches are gone: the stack stops. Start it again on the same --data-dir (objects and the store persist; "
    "files uploaded but not yet imported need a backfill, which does not exist yet)",
    "gcs": "fake-gcs-server: a notification of an object finalized as it died may be lost, and uploads fail while "
    "it is down: the stack stops. Start it again on the same --data-dir (objects persist in DATA_DIR/gcs)",
}


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
    research: bool = False  # also the `research` de-id target (RESEARCH_TARGET) after export_targets
    extra_env: tuple[tuple[str, str], ...] = ()
    emulator_faults: Path | None = None  # fault rules for healthcare_emulator (see healthcare_emulator/faults.py)
    fault_seed: int | None = None
    restart_limit: int = 5  # restarts of one process within restart_window_seconds before the stack gives up
    restart_window_seconds: float = 60.0
    timing: str = "local"  # devstack.timing.PROFILES: local (the stand-ins' own clocks) or cloud
    operations_backoff: tuple[float, float] | None = None  # (min, max) s instead of the profile's (benchmarks)
    intake_deliveries: int = 8  # finalize notifications pushed to on_object_finalized at once (Eventarc: many)

    @property
    def all_export_targets(self) -> str:
        """EXPORT_TARGETS of the functions: export_targets, and the research target when ``research``."""
        if not self.research:
            return self.export_targets
        return json.dumps([*json.loads(self.export_targets or "[]"), RESEARCH_TARGET])

    @property
    def timing_profile(self) -> TimingProfile:
        return PROFILES[self.timing]

    @classmethod
    def on_free_ports(cls, **settings: Any) -> StackConfig:
        """A config on free ports (tests, benchmarks), below the kernel's ephemeral range so that no client
        connection of a busy machine takes one between choosing and binding; the function ports consecutive."""
        ports = free_ports(3 + len(FUNCTIONS))
        return cls(gcs_port=ports[0], pubsub_port=ports[1], healthcare_port=ports[2],
                   functions_port=ports[3], **settings)  # fmt: skip

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
        "SOURCE_BUCKETS": INCOMING_BUCKET, "STATE_BUCKET": STATE_BUCKET, "EXPORT_TARGETS": config.all_export_targets,
        "SETTLE_SECONDS": str(config.settle_seconds), "MAX_WAIT_SECONDS": str(config.max_wait_seconds),
        "FLUSH_RUN_SECONDS": str(flush_run_seconds(config.flush_interval)),
        "HEALTHCARE_API_ENDPOINT": healthcare_url, "LOGGING_API_ENDPOINT": healthcare_url,
        "STORAGE_EMULATOR_HOST": endpoints_storage,
        "PUBSUB_EMULATOR_HOST": pubsub_host, **dict(config.extra_env),
    }  # fmt: skip


MAX_FLUSH_RUN_SECONDS = 480  # FLUSH_RUN_SECONDS' upper bound (an event-driven function runs 540 s at most)


def flush_run_seconds(interval: float) -> int:
    """How long each flush invocation works, as deployed (55 s of a 60 s tick): the tick minus a twelfth of it,
    at least one second for the hand-over; 0 (one pass) for ticks of a second; never above the setting's bound."""
    return min(MAX_FLUSH_RUN_SECONDS, int(max(0.0, interval - max(1.0, interval / 12))))


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
        self._lock = threading.RLock()  # held while a process is replaced
        self._budgets: dict[str, RestartBudget] = {}
        self.failure: str | None = None  # set when a process died that the stack does not (or no longer) restart
        self._reused = False
        self.recovered = threading.Event()  # set once the recovery of a reused --data-dir has queued its objects
        self.gcs_proxy: LatencyProxy | None = None  # the cloud profile's Cloud Storage latency, for the functions

    def start(self) -> StackEndpoints:
        config = self.config
        busy = [f"port {port} for {name}" for name, port in config.ports().items() if port_in_use(port)]
        if busy:
            raise StackError("already in use: " + ", ".join(busy) + " (stop what uses it or choose other ports)")
        data_dir = config.data_dir or Path(self._exit.enter_context(tempfile.TemporaryDirectory(prefix="dicomflow-")))
        data_dir.mkdir(parents=True, exist_ok=True)
        self._reused = (data_dir / "gcs").is_dir() and any((data_dir / "gcs").iterdir())
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
        functions_storage = storage_host
        profile = config.timing_profile
        if profile.gcs_latency:  # the functions' Cloud Storage calls go through the latency proxy
            self.gcs_proxy = LatencyProxy(("127.0.0.1", 0), storage_host, profile.gcs_latency, profile.seed).start()
            functions_storage = self.gcs_proxy.url
        self._env = function_environment(config, functions_storage, pubsub_host, healthcare_url)
        functions = {}
        for index, target in enumerate(FUNCTIONS):
            port = config.functions_port + index
            self.processes[target] = start_function(target, port, self._env, log_path=self._logs / f"{target}.log")
            functions[target] = f"http://127.0.0.1:{port}"
        wiring.create_buckets(storage_host, [INCOMING_BUCKET, EXPORT_BUCKET, STATE_BUCKET])
        wiring.create_store(healthcare_url)
        wiring.create_subscriptions()
        self.endpoints = StackEndpoints(storage_host, pubsub_host, healthcare_url, functions, data_dir)
        env_file = write_env_file(data_dir, self._env)
        if self._reused:  # the Pub/Sub emulator forgot what was pending: queue again what the store lacks
            self._start_thread("recovery", lambda: self._recover(env_file))
        self._start_thread("flush-timer", self._flush_timer)
        for route in self._routes(functions):
            self._start_thread(route.subscription, lambda route=route: relay(route, self._stop))
        self._start_thread("journal", self._journal)
        self._start_thread("supervisor", self._supervise)
        return self.endpoints

    def _routes(self, functions: dict[str, str]) -> list[PushRoute]:
        """Push subscriptions as deployed: notifications of source buckets only (Eventarc triggers are per bucket)
        with Pub/Sub's retry backoff (1-10 s), ``intake_deliveries`` at a time; watches with the timing profile's
        retry policy (local: 1 s doubling up to 5 s; cloud: Terraform's 10..10 s) and a dead-letter topic after
        100, 8 at a time (each follow-up holds its watch while it polls the operation: one instance each, as
        deployed)."""
        sources = frozenset(b.strip() for b in self._env["SOURCE_BUCKETS"].split(",") if b.strip())
        profile = self.config.timing_profile
        low, high = self.config.operations_backoff or (
            profile.operations_min_backoff_seconds,
            profile.operations_max_backoff_seconds,
        )
        return [
            PushRoute(PROJECT, wiring.NOTIFICATIONS_RELAY, functions["on_object_finalized"], max_backoff_seconds=10,
                      accept=_from_buckets(sources), workers=self.config.intake_deliveries),
            PushRoute(PROJECT, wiring.OPERATIONS_RELAY, functions["on_operation"],
                      min_backoff_seconds=low, max_backoff_seconds=high,
                      dead_letter_topic="dicom-operations-dead", max_attempts=100, workers=8),
        ]  # fmt: skip

    def _start_emulator(self) -> ManagedProcess:
        config = self.config
        wait_port_free(config.healthcare_port)
        timing = None
        if config.timing_profile.emulated:
            timing = self._logs / "timing.json"
            timing.write_text(json.dumps(config.timing_profile.emulator_json()))
        return start_healthcare_emulator(
            config.healthcare_port, self._data_dir / "healthcare", f"http://127.0.0.1:{config.gcs_port}",
            log_path=self._logs / "healthcare.log", faults=config.emulator_faults, fault_seed=config.fault_seed,
            timing=timing,
        )  # fmt: skip

    def _start_function(self, target: str) -> ManagedProcess:
        port = self.config.functions_port + FUNCTIONS.index(target)
        wait_port_free(port)
        return start_function(target, port, self._env, log_path=self._logs / f"{target}.log")

    def restart_emulator(self) -> None:
        """Kill healthcare_emulator (SIGKILL) and start it again on the same port and data directory."""
        with self._lock:
            self.processes["healthcare"].kill()
            self.processes["healthcare"] = self._start_emulator()

    def restart_function(self, target: str) -> None:
        """Kill a function process (SIGKILL, as a crashed instance) and start a new one on the same port."""
        with self._lock:
            self.processes[target].kill()
            self.processes[target] = self._start_function(target)

    def _supervise(self) -> None:
        """Every half second: restart a function process or healthcare_emulator (it persists on the data
        directory) that died, at most ``restart_limit`` times per ``restart_window_seconds`` each; when the
        Pub/Sub emulator or fake-gcs-server dies, or a process crash-loops, set ``failure`` and stop."""
        while self.failure is None and not self._stop.wait(0.5):
            for key in list(self.processes):
                with self._lock:
                    process = self.processes.get(key)
                    if self._stop.is_set() or process is None or process.alive():
                        continue
                    self._restart_or_fail(key, process)
                if self.failure is not None:
                    return

    def _restart_or_fail(self, key: str, process: ManagedProcess) -> None:
        how = describe_exit(process.process.returncode)
        where = {"process": process.name, "pid": process.pid, **exit_fields(process.process.returncode)}
        if key in NOT_RESTARTED:
            self._fail(f"{process.name} (pid {process.pid}) {how}; {NOT_RESTARTED[key]}", where)
            return
        config = self.config
        budget = self._budgets.setdefault(key, RestartBudget(config.restart_limit, config.restart_window_seconds))
        if not budget.take():
            self._fail(
                f"{process.name} (pid {process.pid}) {how}, after {config.restart_limit} restarts within "
                f"{config.restart_window_seconds:.0f} s: a crash loop, not restarted again (see {process.log_path})",
                where,
            )
            return
        log.warning(f"{process.name} (pid {process.pid}) {how}; restarting it", extra={"fields": where})
        process.kill()  # its whole process group: a worker left behind would keep the port
        try:
            replacement = self._start_emulator() if key == "healthcare" else self._start_function(key)
        except StackError as exc:  # tried again on the next round, within the budget
            log.error(f"{process.name} could not be restarted: {exc}", extra={"fields": where})
            return
        self.processes[key] = replacement
        log.info(f"{process.name} restarted (pid {replacement.pid})",
                 extra={"fields": {"process": process.name, "pid": replacement.pid}})  # fmt: skip

    def _fail(self, message: str, where: dict[str, object]) -> None:
        log.error(message, extra={"fields": where})
        self.failure = message

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            if thread.name == "supervisor":
                thread.join(timeout=60)  # it may be starting a process: that must be over before we stop them all
        with self._lock:
            for process in reversed(list(self.processes.values())):
                process.stop()
            self.processes.clear()
        for thread in self._threads:  # after the processes: a request in flight fails at once instead of hanging
            thread.join(timeout=10)
        if self.gcs_proxy is not None:
            self.gcs_proxy.stop()
            self.gcs_proxy = None
        self._exit.close()
        if self._previous_pubsub_host is None:
            os.environ.pop("PUBSUB_EMULATOR_HOST", None)
        else:
            os.environ["PUBSUB_EMULATOR_HOST"] = self._previous_pubsub_host

    def _recover(self, env_file: Path) -> None:
        queued = recover(env_file)
        log.info("recovery finished: objects queued again", extra={"fields": {"queued": queued}})
        self.recovered.set()

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

    def _journal(self) -> None:
        """Keep every dicom-results and dicom-failed message in data_dir/*.jsonl for `status` and the demo."""
        assert self.endpoints is not None
        while not self._stop.wait(0.5):
            for name in ("results", "failed"):
                for message in wiring.drain(f"devstack-{name}"):
                    with self.endpoints.journal(name).open("a", encoding="utf-8") as journal:
                        journal.write(json.dumps(message) + "\n")


def _from_buckets(buckets: frozenset[str]) -> Accept:
    """The filter of a notification subscription: only events of these buckets (attribute ``bucketId``)."""

    def accept(attributes: Mapping[str, str]) -> bool:
        return attributes.get("bucketId") in buckets

    return accept

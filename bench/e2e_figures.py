"""Figures of a local-stack run, from every batch: the ledger's manifests (which import covered which file),
every result on ``dicom-results``, every operation of the emulator, and the upload time of every file."""

from __future__ import annotations

import contextlib
import json
import statistics
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from google.cloud import pubsub_v1

from devstack.client import get_json, read_journal, storage_client
from devstack.stack import STATE_BUCKET, StackEndpoints
from devstack.wiring import PROJECT
from dicomflow.ledger.manifest import Manifest

STATE_PREFIX = "dicomflow/"


def epoch(value: str) -> float:
    """An RFC 3339 time (``Z`` or an offset) as seconds since the epoch."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def all_operations(healthcare_url: str, dataset: str) -> list[dict[str, Any]]:
    operations: list[dict[str, Any]] = []
    token = ""
    while True:
        body = get_json(f"{healthcare_url}/v1/{dataset}/operations?pageSize=1000&pageToken={token}") or {}
        operations += body.get("operations", [])
        token = body.get("nextPageToken", "")
        if not token:
            return operations


_read: dict[tuple[str, str], Manifest] = {}  # a manifest never changes once written: read each once


def manifests(endpoints: StackEndpoints) -> list[Manifest]:
    """Every batch of the run (from the ledger in the state bucket)."""
    client = storage_client(endpoints.storage_host)
    found = []
    for blob in client.list_blobs(STATE_BUCKET, prefix=f"{STATE_PREFIX}batches/"):
        key = (endpoints.storage_host, blob.name)
        if blob.name.endswith("/manifest.json") and key not in _read:
            _read[key] = Manifest.from_dict(json.loads(blob.download_as_bytes()))
        if key in _read:
            found.append(_read[key])
    return found


def results(endpoints: StackEndpoints) -> list[dict[str, Any]]:
    return read_journal(endpoints.journal("results"))


def wait_for_files(endpoints: StackEndpoints, names: Iterable[str], timeout: float, poll: float = 2.0) -> None:
    """Until every one of ``names`` was imported or failed in a batch that published its result."""
    wanted = set(names)
    deadline = time.monotonic() + timeout
    while True:
        done_batches = {r["batch_id"] for r in results(endpoints)}
        settled: set[str] = set()
        for manifest in manifests(endpoints):
            if manifest.batch_id in done_batches:
                settled.update(f.record.name for f in manifest.files)
        missing = wanted - settled
        failed = {f["name"] for f in read_journal(endpoints.journal("failed"))}
        if not (missing - failed):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(missing)} of {len(wanted)} files have no result after {timeout:.0f} s")
        time.sleep(poll)


class PendingTap:
    """A subscription of its own on ``dicom-pending``: when each file's record was queued by intake (the
    message's publish time; the first one, should a file be re-driven)."""

    def __init__(self) -> None:
        self.queued: dict[str, float] = {}
        self.subscriber = pubsub_v1.SubscriberClient()
        self.path = self.subscriber.subscription_path(PROJECT, "bench-pending-tap")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pending-tap", daemon=True)

    def __enter__(self) -> PendingTap:
        topic = pubsub_v1.PublisherClient.topic_path(PROJECT, "dicom-pending")
        self.subscriber.create_subscription(request={"name": self.path, "topic": topic})
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                response = self.subscriber.pull(request={"subscription": self.path, "max_messages": 1000}, timeout=2)
            except Exception:  # an empty pull times out: again
                continue
            for received in response.received_messages:
                with contextlib.suppress(ValueError, KeyError):
                    published = received.message.publish_time.timestamp()  # set by Pub/Sub when intake published
                    self.queued.setdefault(json.loads(received.message.data)["name"], published)
            if response.received_messages:
                ack_ids = [m.ack_id for m in response.received_messages]
                self.subscriber.acknowledge(request={"subscription": self.path, "ack_ids": ack_ids})


def flush_reports(endpoints: StackEndpoints) -> dict[str, dict[str, Any]]:
    """The ``flush finished`` log line of every batch (plan and stage seconds), by batch id."""
    path = endpoints.data_dir / "logs" / "on_flush.log"
    reports: dict[str, dict[str, Any]] = {}
    for line in path.read_text(errors="replace").splitlines() if path.exists() else []:
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if entry.get("message") == "flush finished" and entry.get("batch_id"):
                reports[entry["batch_id"]] = entry
    return reports


@dataclass
class RunFigures:
    """Every batch that covered one of the run's files, and per-file latencies."""

    files: int
    batches: int
    imports: int
    copies: int
    milestones: dict[str, float]  # phase -> seconds on the critical path from the first upload
    import_busy: float  # seconds during which at least one of the run's imports ran
    export_busy: float
    stage_seconds: float  # copying into staging, every batch
    upload_to_queued: list[float] = field(default_factory=list)  # per file: intake's record on dicom-pending
    upload_to_import_start: list[float] = field(default_factory=list)
    upload_to_result: list[float] = field(default_factory=list)
    import_start: dict[str, float] = field(default_factory=dict)  # per file: its import's createTime, epoch s
    import_noticed: list[float] = field(default_factory=list)  # per batch: its last import's end -> export start
    export_noticed: list[float] = field(default_factory=list)  # per batch: its last export's end -> its result

    @property
    def total(self) -> float:
        return sum(self.milestones.values())


def collect(
    endpoints: StackEndpoints, uploaded: Mapping[str, tuple[float, float]], queued: Mapping[str, float]
) -> RunFigures:
    """Figures for the files in ``uploaded`` (name -> (upload started, upload finished), epoch seconds), with
    the time each record was ``queued`` on dicom-pending (PendingTap)."""
    dataset = endpoints.store_name.split("/dicomStores/")[0]
    operations = {o["name"]: o for o in all_operations(endpoints.healthcare_url, dataset)}
    published = {r["batch_id"]: r for r in results(endpoints)}
    finished = {batch: epoch(r["timings"]["finished"]) for batch, r in published.items()}
    import_start: dict[str, float] = {}
    result_time: dict[str, float] = {}
    batches: set[str] = set()
    imports: set[str] = set()
    exports: set[str] = set()
    copies, created = 0, []
    import_noticed: list[float] = []
    export_noticed: list[float] = []
    for manifest in manifests(endpoints):
        ours = [f for f in manifest.files if f.record.name in uploaded]
        if not ours:
            continue
        batches.add(manifest.batch_id)
        created.append(epoch(manifest.created))
        copies += sum(1 for f in ours if f.staged)
        starts = {i.uri: epoch(operations[i.operation]["metadata"]["createTime"]) for i in manifest.imports}
        imports.update(i.operation for i in manifest.imports)
        exported = published.get(manifest.batch_id, {}).get("exports", [])
        exports.update(e["operation"] for e in exported if e["operation"])
        batch_exports = [operations[e["operation"]] for e in exported if e["operation"] in operations]
        if batch_exports and manifest.batch_id in finished:
            imported = max(epoch(operations[i.operation]["metadata"]["endTime"]) for i in manifest.imports)
            import_noticed.append(min(epoch(o["metadata"]["createTime"]) for o in batch_exports) - imported)
            export_noticed.append(finished[manifest.batch_id] - max(epoch(o["metadata"]["endTime"])
                                                                    for o in batch_exports))  # fmt: skip
        for file in ours:
            name = file.record.name
            import_start[name] = min(import_start.get(name, float("inf")), starts[file.via])
            if manifest.batch_id in finished:
                result_time[name] = max(result_time.get(name, 0.0), finished[manifest.batch_id])
    import_ops = [operations[name] for name in imports]
    export_ops = [operations[name] for name in exports]
    first_upload = min(start for start, _ in uploaded.values())
    points = {
        "upload": max(end for _, end in uploaded.values()),
        "intake (queued on dicom-pending)": max(queued[n] for n in uploaded if n in queued),
        "settle, until the last batch's pass": max(created),
        "plan + stage + start its imports": max(epoch(o["metadata"]["createTime"]) for o in import_ops),
        "import": max(epoch(o["metadata"]["endTime"]) for o in import_ops),
        "noticing it ended + reconcile + start export": max(epoch(o["metadata"]["createTime"]) for o in export_ops),
        "export": max(epoch(o["metadata"]["endTime"]) for o in export_ops),
        "noticing it ended + report": max(finished[b] for b in batches if b in finished),
    }
    milestones, previous = {}, first_upload
    for phase, point in points.items():
        milestones[phase] = max(0.0, point - previous)
        previous = max(previous, point)
    logged = flush_reports(endpoints)
    return RunFigures(
        files=len(uploaded), batches=len(batches), imports=len(imports), copies=copies, milestones=milestones,
        import_busy=_busy(import_ops), export_busy=_busy(export_ops),
        stage_seconds=sum(float(logged.get(b, {}).get("stage_seconds", 0.0)) for b in batches),
        upload_to_queued=[queued[n] - uploaded[n][1] for n in uploaded if n in queued],
        upload_to_import_start=[import_start[n] - uploaded[n][1] for n in uploaded if n in import_start],
        upload_to_result=[result_time[n] - uploaded[n][1] for n in uploaded if n in result_time],
        import_start=import_start, import_noticed=import_noticed, export_noticed=export_noticed,
    )  # fmt: skip


def _busy(operations: list[dict[str, Any]]) -> float:
    """Seconds covered by the union of the operations' [createTime, endTime] intervals."""
    spans = sorted((epoch(o["metadata"]["createTime"]), epoch(o["metadata"]["endTime"])) for o in operations)
    busy, end = 0.0, float("-inf")
    for start, stop in spans:
        if stop > end:
            busy += stop - max(start, end)
            end = stop
    return busy


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0-1) of ``values``, interpolated; nan when empty."""
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[round(q * 1000) - 1]

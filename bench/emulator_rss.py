"""The emulator's RSS within one life under a soak-like mix, minute by minute (figures, not assertions).

    python -m bench.emulator_rss [--minutes 8] [--rate 150] [--emulator-root DIR] [--compare-with DIR]
                                 [--tracemalloc]

Starts fake-gcs-server (in memory) and ``python -m healthcare_emulator`` with the soak's fault rules
(``bench.soak.FAULTS``: 503/429 on imports and operations.get, 503 and latency on DICOMweb), then drives over
HTTP what the pipeline and the soak's observer call, without the pipeline: every 10 s a batch of ``rate/6``
files (``bench.soak_shapes``: a study, drop files, a bad file, a conflicting re-send) is uploaded and imported;
its operation is polled, its failed files read with ``entries:list`` (the pipeline's filter), its studies
listed (QIDO per study), the batch exported to GCS with a filter file, and every third batch de-identified
into a second store (about 14 operations a minute, as the soak's). An observer lists the whole store every
10 s (``instances?includefield=00080018``) and retrieves every new instance once (and every tenth one's
metadata). Prints the emulator's VmRSS every minute and the growth from minute 2 to the end.

``--emulator-root DIR`` runs another checkout's emulator (e.g. ``/work/main``, the code before a fix);
``--compare-with DIR`` runs the same drive against DIR's emulator first, then this one's, and prints both
side by side with ratios. The emulator runs with ``HEALTHCARE_EMULATOR_DEBUG_MEMORY=1`` (see
``healthcare_emulator.debug_memory``); ``--tracemalloc`` starts tracemalloc in it (25 frames) once it is up,
takes snapshots at minute 2
and at the end and prints the lines whose allocations grew most; after the run it also calls
``malloc_trim(0)`` in the emulator and prints the RSS it gave back (freed memory the C allocator had kept).
When the emulator serves ``/emulator/memory``, each minute also shows glibc's heap: bytes in use and free
bytes it keeps.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import platform
import random
import sys
import tempfile
import threading
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

from bench import soak_shapes as shapes
from bench.emulator_memory import rss_mib
from bench.soak import FAULTS
from bench.soak_model import Upload
from devstack.processes import ManagedProcess, free_ports, start_fake_gcs, start_healthcare_emulator

PROJECT = "bench"
DATASET = f"projects/{PROJECT}/locations/us-central1/datasets/rss"
STORE = f"{DATASET}/dicomStores/soak"
RESEARCH = f"{DATASET}/dicomStores/research"
SOURCE, EXPORTS = "rss-incoming", "rss-exports"
BATCH_SECONDS = OBSERVE_SECONDS = 10.0
DEID_CONFIG = {"dicom": {"filterProfile": "ATTRIBUTE_CONFIDENTIALITY_BASIC_PROFILE"}}
_RETRIED = frozenset({429, 500, 502, 503, 504})
_local = threading.local()


def _session() -> requests.Session:
    session: requests.Session | None = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
    return session


def call(method: str, url: str, attempts: int = 10, **kwargs: Any) -> requests.Response:
    """One HTTP call, retried on 429/5xx (the injected faults) with a short backoff; raises on other errors."""
    for attempt in range(attempts):
        response = _session().request(method, url, timeout=120, **kwargs)
        if response.status_code not in _RETRIED:
            if response.status_code >= 400:
                raise RuntimeError(f"{method} {url.rsplit('/v1/', 1)[-1][:80]}: HTTP {response.status_code}")
            return response
        time.sleep(min(2.0, 0.1 * 2**attempt))
    raise RuntimeError(f"{method} {url[:80]}: still failing after {attempts} attempts")


@dataclass
class Counts:
    files: int = 0
    operations: int = 0
    failed_entries: int = 0
    listings: int = 0
    retrieves: int = 0
    errors: list[str] = field(default_factory=list)


class Drive:
    """The soak-like traffic against one emulator (``hc``) and one fake-gcs-server (``gcs``)."""

    def __init__(self, hc: str, gcs: str, rate: float, seed: int = 23) -> None:
        self.hc, self.gcs = hc, gcs
        self.per_batch = max(6, round(rate * BATCH_SECONDS / 60))
        self.rng = random.Random(seed)
        self.counts = Counts()
        self.retrieved: set[str] = set()
        self.by_sop: dict[str, tuple[str, str, str]] = {}
        self.earlier: list[Upload] = []
        self.lock = threading.Lock()

    def set_up(self) -> None:
        for bucket in (SOURCE, EXPORTS):
            call("POST", f"{self.gcs}/storage/v1/b", json={"name": bucket})
        call("POST", f"{self.hc}/v1/{DATASET.rsplit('/datasets/', 1)[0]}/datasets?datasetId=rss", json={})
        for store in (STORE, RESEARCH):
            call("POST", f"{self.hc}/v1/{DATASET}/dicomStores?dicomStoreId={store.rsplit('/', 1)[1]}", json={})

    def upload(self, name: str, data: bytes) -> None:
        call("POST", f"{self.gcs}/upload/storage/v1/b/{SOURCE}/o?uploadType=media&name={quote(name, safe='')}",
             data=data, headers={"Content-Type": "application/octet-stream"})  # fmt: skip

    def items(self, number: int) -> list[shapes.Item]:
        """About ``per_batch`` files: a study of 3 x 5, drop files, one bad file, now and then a conflict."""
        seed = self.rng.getrandbits(32)
        made = shapes.study(number, seed, series=3, instances=5)
        made += shapes.drop(seed + 1, count=max(1, self.per_batch - len(made) - 2))
        made.append(shapes.bad(number))
        with self.lock:
            if self.earlier and number % 2 == 0:
                made.append(shapes.conflict(self.rng.choice(self.earlier), self.rng))
            self.earlier += [Upload(i.shape, i.name, "1", i.uids) for i in made if i.uids and i.shape == "study"]
            self.earlier = self.earlier[-500:]
        return made

    def wait(self, operation: dict[str, Any]) -> dict[str, Any]:
        while not operation.get("done"):
            time.sleep(1.0)
            operation = call("GET", f"{self.hc}/v1/{operation['name']}").json()
        with self.lock:
            self.counts.operations += 1
        return operation

    def batch(self, number: int) -> None:
        try:
            self._batch(number)
        except Exception as exc:  # counted and shown, the run goes on
            with self.lock:
                self.counts.errors.append(f"batch {number}: {exc}")

    def _batch(self, number: int) -> None:
        prefix = f"rss/{number:05d}"
        made = self.items(number)
        for item in made:
            self.upload(f"{prefix}/{item.name}", item.data)
        with self.lock:
            self.counts.files += len(made)
            self.by_sop.update({i.uids[2]: i.uids for i in made if i.uids and i.shape != "conflict"})
        body: dict[str, Any] = {"gcsSource": {"uri": f"gs://{SOURCE}/{prefix}/**"}}
        imported = self.wait(call("POST", f"{self.hc}/v1/{STORE}:import", json=body).json())
        self.failed_entries(imported["name"])
        studies = sorted({i.uids[0] for i in made if i.uids and i.shape == "study"})
        for study in studies:
            call("GET", f"{self.hc}/v1/{STORE}/dicomWeb/studies/{study}/instances",
                 params={"limit": "50000", "offset": "0", "includefield": ["0020000E", "00080018"]})  # fmt: skip
        self.upload(f"filters/{number:05d}.txt", "".join(f"/studies/{s}\n" for s in studies).encode())
        filter_config = {"resourcePathsGcsUri": f"gs://{SOURCE}/filters/{number:05d}.txt"}
        body = {"gcsDestination": {"uriPrefix": f"gs://{EXPORTS}/{prefix}"}, "filterConfig": filter_config}
        exported = self.wait(call("POST", f"{self.hc}/v1/{STORE}:export", json=body).json())
        self.failed_entries(exported["name"])
        if number % 3 == 0:
            body = {"destinationStore": RESEARCH, "config": DEID_CONFIG, "filterConfig": filter_config}
            deidentified = self.wait(call("POST", f"{self.hc}/v1/{STORE}:deidentify", json=body).json())
            self.failed_entries(deidentified["name"])

    def failed_entries(self, operation: str) -> None:
        """What dicomflow.adapters.cloud_logging reads for one operation."""
        body = {
            "resourceNames": [f"projects/{PROJECT}"],
            "filter": f'resource.type="healthcare_dicom_store" AND operation.id="{operation.rsplit("/", 1)[1]}" '
            "AND severity>=ERROR",
            "orderBy": "timestamp asc",
            "pageSize": 1000,
        }
        entries = call("POST", f"{self.hc}/v2/entries:list", json=body).json().get("entries", [])
        with self.lock:
            self.counts.failed_entries += len(entries)

    def observe(self) -> None:
        """The soak's observer: the whole store's SOPs, then each new instance's content once."""
        response = call("GET", f"{self.hc}/v1/{STORE}/dicomWeb/instances?includefield=00080018")
        listed = [i["00080018"]["Value"][0] for i in response.json()] if response.status_code == 200 else []
        with self.lock:
            self.counts.listings += 1
            new = [sop for sop in listed if sop not in self.retrieved and sop in self.by_sop][:2000]
        for count, sop in enumerate(new, 1):
            study, series, _ = self.by_sop[sop]
            url = f"{self.hc}/v1/{STORE}/dicomWeb/studies/{study}/series/{series}/instances/{sop}"
            call("GET", url, headers={"Accept": "application/dicom; transfer-syntax=*"})
            if count % 10 == 0:
                call("GET", f"{url}/metadata")
            with self.lock:
                self.retrieved.add(sop)
                self.counts.retrieves += 1


def memory(hc: str, **body: int) -> dict[str, Any]:
    """The emulator's /emulator/memory answer ({} when it does not serve it)."""
    with contextlib.suppress(requests.RequestException, ValueError):
        response = requests.post(f"{hc}/emulator/memory", json=body, timeout=600)
        if response.status_code == 200:
            answer: dict[str, Any] = response.json()
            return answer
    return {}


def grown_lines(first: str, last: str, top: int = 25) -> list[str]:
    """The source lines whose live allocations grew most between two tracemalloc snapshot files."""
    ignored = [tracemalloc.Filter(False, "<frozen importlib._bootstrap*>"), tracemalloc.Filter(False, "<unknown>"),
               tracemalloc.Filter(False, tracemalloc.__file__)]  # fmt: skip
    old = tracemalloc.Snapshot.load(first).filter_traces(ignored)
    new = tracemalloc.Snapshot.load(last).filter_traces(ignored)
    lines = [str(stat) for stat in new.compare_to(old, "lineno")[:top]]
    lines.append("largest growth by traceback:")
    for stat in new.compare_to(old, "traceback")[:3]:
        lines.append(f"  {stat.size_diff / 1024:+.0f} KiB in {stat.count_diff:+d} blocks")
        lines += [f"    {frame}" for frame in stat.traceback.format(limit=8)]
    return lines


@dataclass
class Run:
    label: str
    minutes: list[float] = field(default_factory=list)  # RSS MiB at the end of each minute
    traced: list[float] = field(default_factory=list)  # tracemalloc's current MiB at the same times
    peaks: list[float] = field(default_factory=list)  # tracemalloc's peak MiB within each minute
    counts: Counts = field(default_factory=Counts)
    after_trim: float | None = None

    def growth(self) -> tuple[float, float]:
        start = self.minutes[min(1, len(self.minutes) - 1)]
        return start, self.minutes[-1]


def drive(label: str, root: Path | None, minutes: float, rate: float, trace: bool, extra: list[str]) -> Run:
    run = Run(label)
    with tempfile.TemporaryDirectory(prefix="emulator-rss-") as scratch:
        gcs_port, hc_port = free_ports(2)
        faults = Path(scratch) / "faults.json"
        faults.write_text(json.dumps(FAULTS))
        env = {"HEALTHCARE_EMULATOR_DEBUG_MEMORY": "1"}
        processes: list[ManagedProcess] = []
        try:
            processes.append(start_fake_gcs(gcs_port, log_path=Path(scratch) / "gcs.log"))
            gcs = f"http://127.0.0.1:{gcs_port}"
            emulator = start_healthcare_emulator(
                hc_port, Path(scratch) / "data", gcs, log_path=Path(scratch) / "log", faults=faults, fault_seed=7,
                env=env, root=root, extra_args=extra,
            )  # fmt: skip
            processes.append(emulator)
            hc = f"http://127.0.0.1:{hc_port}"
            traffic = Drive(hc, gcs, rate)
            traffic.set_up()
            if trace:
                memory(hc, trace=25)
            run.counts = traffic.counts
            _drive(run, traffic, emulator, minutes, trace)
            answer = memory(hc, trim=True)  # after the figures: how much of the RSS was free heap memory
            run.after_trim = answer.get("rssKiBAfterTrim", 0) / 1024 or None
        finally:
            for process in reversed(processes):
                process.stop()
    return run


def _drive(run: Run, traffic: Drive, emulator: ManagedProcess, minutes: float, trace: bool) -> None:
    stop = threading.Event()
    started = time.monotonic()

    def observer() -> None:
        while not stop.wait(OBSERVE_SECONDS):
            try:
                traffic.observe()
            except Exception as exc:  # counted and shown
                with traffic.lock:
                    traffic.counts.errors.append(f"observer: {exc}")

    watcher = threading.Thread(target=observer, name="observer")
    watcher.start()
    snapshots: list[str] = []

    def sample() -> None:
        minute = len(run.minutes) + 1
        answer = memory(traffic.hc, snapshot=trace and minute == 2)
        if "snapshot" in answer:
            snapshots.append(answer["snapshot"])
        run.minutes.append(rss_mib(emulator.pid))
        run.traced.append(answer.get("tracedKiB", 0) / 1024)
        run.peaks.append(answer.get("tracedPeakKiB", 0) / 1024)
        c, heap, kinds = traffic.counts, answer.get("malloc") or {}, answer.get("rssByKindKiB") or {}
        print(f"  [{run.label}] minute {minute:3d}: RSS {run.minutes[-1]:6.1f} MiB"
              + (f", traced {run.traced[-1]:6.1f} MiB (peak {run.peaks[-1]:6.1f})" if trace else "")
              + (f", C heap in use {heap['inUseKiB'] / 1024:.1f} free {heap['freeKiB'] / 1024:.1f} mmapped "
                 f"{heap['mmappedKiB'] / 1024:.1f} MiB" if heap else "")
              + (" (RSS by kind: " + ", ".join(f"{k} {v / 1024:.1f}" for k, v in kinds.items()) + ")" if kinds else "")
              + f"; files {c.files}, operations {c.operations}, failed-file entries {c.failed_entries}, "
              f"listings {c.listings}, retrieves {c.retrieves}, errors {len(c.errors)}", flush=True)  # fmt: skip

    with ThreadPoolExecutor(max_workers=3, thread_name_prefix="batch") as pool:
        numbers = itertools.count(1)
        next_batch, next_minute = started, started + 60
        end = started + minutes * 60
        while time.monotonic() < end:
            now = time.monotonic()
            if now >= next_batch:
                pool.submit(traffic.batch, next(numbers))
                next_batch += BATCH_SECONDS
            if now >= next_minute:
                sample()
                next_minute += 60
            time.sleep(max(0.0, min(next_batch, next_minute, end) - time.monotonic()))
        if len(run.minutes) < round(minutes):  # the last minute ends with the run
            sample()
        stop.set()
    watcher.join()
    if trace:
        answer = memory(traffic.hc, snapshot=True)
        if "snapshot" in answer and snapshots:
            print(f"  [{run.label}] tracemalloc growth, minute 2 -> end (top lines):")
            for line in grown_lines(snapshots[0], answer["snapshot"]):
                print(f"    {line}")
    for error in traffic.counts.errors[:5]:
        print(f"  [{run.label}] error: {error}")


def summary(run: Run) -> str:
    start, end = run.growth()
    text = f"{run.label}: RSS minute 2 -> end {start:.1f} -> {end:.1f} MiB ({(end / start - 1) * 100:+.0f} %)"
    text += f", peak {max(run.minutes):.1f} MiB"
    if run.traced and run.traced[-1]:
        text += f"; traced {run.traced[min(1, len(run.traced) - 1)]:.1f} -> {run.traced[-1]:.1f} MiB"
    if run.after_trim:
        text += f"; after malloc_trim {run.after_trim:.1f} MiB"
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=8.0)
    parser.add_argument("--rate", type=float, default=150.0, help="files uploaded a minute")
    parser.add_argument("--emulator-root", type=Path, help="the checkout whose emulator runs (default: this one)")
    parser.add_argument("--compare-with", type=Path, help="run the same drive against this checkout first")
    parser.add_argument("--tracemalloc", action="store_true", help="trace the emulator's allocations (slower)")
    parser.add_argument("--emulator-arg", action="append", default=[], help="passed to this checkout's emulator")
    args = parser.parse_args(argv)
    print(f"{platform.machine()}, {platform.python_version()}, {args.minutes:g} min at {args.rate:g} files/min",
          flush=True)  # fmt: skip
    runs: list[Run] = []
    if args.compare_with:
        runs.append(drive(f"before ({args.compare_with})", args.compare_with, args.minutes, args.rate, args.tracemalloc,
                          []))  # fmt: skip
    label = f"{'after' if runs else 'run'} ({args.emulator_root or 'this checkout'} {' '.join(args.emulator_arg)})"
    runs.append(drive(label.replace(" )", ")"), args.emulator_root, args.minutes, args.rate, args.tracemalloc,
                      args.emulator_arg))  # fmt: skip
    for run in runs:
        print(summary(run))
    if len(runs) == 2:
        before, after = (run.growth() for run in runs)
        print(f"after/before: RSS at minute 2 x{after[0] / before[0]:.2f}, at the end x{after[1] / before[1]:.2f}, "
              f"growth {after[1] - after[0]:+.1f} vs {before[1] - before[0]:+.1f} MiB")  # fmt: skip
        for minute, (old, new) in enumerate(zip(runs[0].minutes, runs[1].minutes, strict=False), 1):
            print(f"  minute {minute:3d}: {old:6.1f} -> {new:6.1f} MiB (x{new / old:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

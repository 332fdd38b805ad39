"""The soak (issue 23): the local stack for an hour under a steady upload of realistic shapes and faults all
along, with figures every few minutes and a verdict at the end (exit status 1 when it fails).

    python -m bench.soak [--minutes 60] [--rate 150] [--report-every 5] [--kill-every 4] [--drain-minutes 10]
                         [--seed 23] [--data-dir DIR]

Shapes (bench.soak_shapes; what each may become: bench.soak_model.ALLOWED): new study folders, a flat drop
folder, identical re-sends and conflicting overwrites of stored files, deletes a few seconds after upload, bad
files, a DICOM media file-set (DICOMDIR + images). Faults: 503/429 and latency rules of the emulator (from the
start, reloaded by every restart) and bursts of them at every kill, a duplicate finalize event for one upload
in ten, a kill -9 of a function process every --kill-every minutes (the stack's supervisor restarts it), one
kill -9 of healthcare_emulator while it holds an import (40 % into the run), one stop and start of the whole
stack on its data dir (65 %).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import requests
from google.cloud import pubsub_v1, storage

from bench import soak_shapes as shapes
from bench.e2e_figures import STATE_PREFIX, all_operations
from bench.soak_model import Check, Observation, Outcome, Sample, Tally, Upload, outcome, tally, verdict
from bench.soak_probe import groups_usage, java_live_objects
from devstack.checks import counts_add_up
from devstack.client import read_journal, storage_client
from devstack.processes import StackError
from devstack.stack import INCOMING_BUCKET, NOTIFICATIONS_TOPIC, STATE_BUCKET, LocalStack, StackConfig
from devstack.wiring import PROJECT
from dicomflow.dicom.content import data_set_digest
from dicomflow.ledger.failures import FailureNotes

log = logging.getLogger("bench.soak")

FAULTS = [  # installed at start with --faults, so every emulator restart reloads them
    {"method": "POST", "path": ":import$", "status": 503, "rate": 0.05},
    {"method": "POST", "path": ":import$", "status": 429, "rate": 0.02},
    {"method": "GET", "path": "/operations/", "status": 503, "rate": 0.05},
    {"method": "GET", "path": "/operations/", "status": 429, "rate": 0.02},
    {"method": "GET", "path": "dicomWeb/studies/", "status": 503, "rate": 0.01},
    {"path": "dicomWeb", "seconds": 0.05, "rate": 0.1},
]
BURST = [  # added at every kill: the next calls fail for certain
    {"method": "POST", "path": ":import$", "status": 503, "count": 1},
    {"method": "GET", "path": "/operations/", "status": 429, "count": 2},
]
HOLD = {"kind": "operation-delay", "operation": "ImportDicomData", "seconds": 600, "count": 1}
KILL_ORDER = ("on_flush", "on_operation", "on_object_finalized")
DUPLICATE_EVERY = 10  # one upload in ten gets a second finalize event
OBSERVE_SECONDS, SAMPLE_SECONDS = 10.0, 30.0  # sampling: every run/60 s within these bounds


@dataclass(frozen=True)
class Options:
    minutes: float = 60.0
    rate: float = 150.0  # files a minute (180 sustained on 2 shared cores, 2026-12-06)
    report_every: float = 5.0  # minutes
    kill_every: float = 4.0  # minutes
    drain_minutes: float = 10.0
    seed: int = 23
    data_dir: Path | None = None

    @property
    def run_seconds(self) -> float:
        return self.minutes * 60


class Soak:
    """One soak run: the stack, the uploads, the faults, what was seen, the figures."""

    def __init__(self, options: Options, data_dir: Path) -> None:
        self.options = options
        data_dir.mkdir(parents=True, exist_ok=True)
        faults = data_dir / "faults.json"
        faults.write_text(json.dumps(FAULTS))
        self.config = StackConfig.on_free_ports(data_dir=data_dir / "stack", emulator_faults=faults,
                                                fault_seed=options.seed)  # fmt: skip
        self.stack = LocalStack(self.config)
        self.lock = threading.RLock()  # held while the stack is replaced, and while it is observed
        self.rng = random.Random(options.seed)
        self.t0 = time.monotonic()
        self.uploads: list[Upload] = []
        self.by_sop: dict[str, tuple[str, str, str]] = {}
        self.bytes_of: dict[tuple[str, str], bytes] = {}  # study and drop uploads not re-sent or overwritten yet
        self.seen = Observation()
        self.samples: list[Sample] = []
        self.events: Counter[str] = Counter()
        self.fired: Counter[str] = Counter()  # fault rules fired before the emulator restarts
        self.results: dict[str, dict[str, Any]] = {}  # batch id -> published result (the ledger's result.json)
        self.deletes: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._storage: storage.Client | None = None
        self._publisher: pubsub_v1.PublisherClient | None = None
        self._note_keys: dict[str, str] = {}  # failure-note key -> object name
        self._note_reasons: dict[str, str] = {}

    # ----- the stack -----

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def start_stack(self) -> None:
        for attempt in range(10):  # the ports of the last stack may take a moment to be free
            try:
                self.stack = LocalStack(self.config)
                self.stack.start()
                break
            except StackError as exc:
                if attempt == 9:
                    raise
                log.warning(f"stack did not start ({exc}); again")
                time.sleep(3)
        self._storage = storage_client(self.endpoints().storage_host)
        self._publisher = pubsub_v1.PublisherClient()

    def endpoints(self) -> Any:
        assert self.stack.endpoints is not None
        return self.stack.endpoints

    def restart_stack(self) -> None:
        """Stop every process of the stack and start it again on its data dir (it backfills what was pending)."""
        with self.lock:
            self._carry_fired()
            began = time.monotonic()
            self.stack.stop()
            self.start_stack()
            self.stack.recovered.wait(timeout=300)
            self.events["stack restarts"] += 1
            print(f"[soak {_clock(self.elapsed())}] stack stopped and started on its data dir "
                  f"in {time.monotonic() - began:.0f} s", flush=True)  # fmt: skip

    def kill(self, role: str) -> None:
        """kill -9 of the process the stack started for ``role`` (by its PID): the supervisor restarts it."""
        with self.lock:
            os.kill(self.stack.processes[role].pid, signal.SIGKILL)
        self.events[f"kill -9 {role}"] += 1

    def add_faults(self, rules: list[dict[str, Any]]) -> None:
        for rule in rules:
            with contextlib.suppress(requests.RequestException):
                requests.post(f"{self.endpoints().healthcare_url}/emulator/faults", json=rule, timeout=10)

    def fault_rules(self) -> list[dict[str, Any]]:
        try:
            rules = requests.get(f"{self.endpoints().healthcare_url}/emulator/faults", timeout=10).json()["rules"]
            return list(rules)
        except (requests.RequestException, ValueError, KeyError):
            return []

    def fired_now(self) -> Counter[str]:
        fired: Counter[str] = Counter()
        for rule in self.fault_rules():
            kind = rule.get("kind") or (str(rule["status"]) if rule.get("status") else "latency")
            fired[str(kind)] += int(rule.get("fired", 0))
        return fired

    def _carry_fired(self) -> None:
        self.fired += self.fired_now()

    # ----- uploads -----

    def upload(self, items: list[shapes.Item]) -> list[Upload]:
        assert self._storage is not None
        bucket = self._storage.bucket(INCOMING_BUCKET)

        def put(item: shapes.Item) -> Upload:
            blob = bucket.blob(item.name)
            _retry(lambda: blob.upload_from_string(item.data, content_type="application/dicom"))
            digest = data_set_digest(item.data) if item.uids else None
            return Upload(item.shape, item.name, str(blob.generation), item.uids, digest, self.elapsed())

        with ThreadPoolExecutor(4) as pool:
            done = list(pool.map(put, items))
        for item, upload in zip(items, done, strict=True):
            self.uploads.append(upload)
            if upload.uids:
                self.by_sop[upload.uids[2]] = upload.uids
            if item.shape in ("study", "drop"):
                self.bytes_of[upload.key] = item.data
            if len(self.uploads) % DUPLICATE_EVERY == 0:
                self.duplicate_event(upload)
        return done

    def duplicate_event(self, upload: Upload) -> None:
        """A second finalize notification of the same generation (Pub/Sub and Eventarc deliver at least once)."""
        assert self._publisher is not None
        body = {"bucket": INCOMING_BUCKET, "name": upload.name, "generation": upload.generation}
        with contextlib.suppress(Exception):
            self._publisher.publish(
                self._publisher.topic_path(PROJECT, NOTIFICATIONS_TOPIC), json.dumps(body).encode(),
                eventType="OBJECT_FINALIZE", bucketId=INCOMING_BUCKET, objectId=upload.name,
                objectGeneration=upload.generation, payloadFormat="JSON_API_V1",
            ).result(timeout=30)  # fmt: skip
            self.events["duplicate finalize events"] += 1

    def stored_originals(self, count: int) -> list[Upload]:
        """Up to ``count`` study or drop uploads that are in the store with their own content and were neither
        re-sent nor overwritten (and are taken out of that pool)."""
        chosen = []
        for upload in self.uploads:
            if upload.key in self.bytes_of and outcome(upload, self.seen)[0] is Outcome.STORED:
                chosen.append(upload)
                if len(chosen) == count:
                    break
        return chosen

    def units(self) -> Iterator[Callable[[], list[shapes.Item]]]:
        """The shapes in turn, for ever: per cycle a study (10 files), a drop (5), 3 re-sends, 1 conflict,
        2 deletes, 1 bad file; a media file-set (6 images + DICOMDIR) every 10th cycle."""
        cycle = 0
        while True:
            seed = self.options.seed * 1_000_000 + cycle * 10
            yield partial(shapes.study, cycle, seed)
            yield partial(shapes.drop, seed + 1)
            yield self.resends
            yield self.conflicts
            yield partial(shapes.deleted, cycle, seed + 2)
            yield partial(_one, shapes.bad(cycle))
            if cycle % 10 == 5:
                yield partial(shapes.media, cycle, seed + 3)
            cycle += 1

    def resends(self) -> list[shapes.Item]:
        return [shapes.resend(u, self.bytes_of.pop(u.key)) for u in self.stored_originals(3)]

    def conflicts(self) -> list[shapes.Item]:
        chosen = self.stored_originals(1)
        for upload in chosen:
            del self.bytes_of[upload.key]
        return [shapes.conflict(u, self.rng) for u in chosen]

    def delete_due(self) -> None:
        assert self._storage is not None
        now = self.elapsed()
        due = [name for at, name in self.deletes if at <= now]
        self.deletes = [(at, name) for at, name in self.deletes if at > now]
        for name in due:
            with contextlib.suppress(Exception):
                self._storage.bucket(INCOMING_BUCKET).blob(name).delete()
                self.events["deletes"] += 1

    # ----- observing -----

    def observe(self) -> None:
        """The store's SOPs (and the stored content of each new one), the failures (journal and notes)."""
        with self.lock:
            listed = self._listed()
            if listed is None:
                return
            self.seen.listed = listed
            for sop in [s for s in listed if s in self.by_sop and s not in self.seen.digests][:2000]:
                digest = self._stored_digest(self.by_sop[sop])
                if digest is not None:
                    self.seen.digests[sop] = digest
            self.seen.failures = self._failures()

    def _listed(self) -> Counter[str] | None:
        endpoints = self.endpoints()
        url = f"{endpoints.healthcare_url}/v1/{endpoints.store_name}/dicomWeb/instances?includefield=00080018"
        try:
            response = requests.get(url, timeout=120)
            if response.status_code == 204:
                return Counter()
            response.raise_for_status()
            return Counter(i["00080018"]["Value"][0] for i in response.json())
        except (requests.RequestException, ValueError, KeyError):
            return None

    def _stored_digest(self, uids: tuple[str, str, str]) -> str | None:
        endpoints = self.endpoints()
        study, series, sop = uids
        store = f"{endpoints.healthcare_url}/v1/{endpoints.store_name}/dicomWeb"
        url = f"{store}/studies/{study}/series/{series}/instances/{sop}"
        try:
            response = requests.get(url, headers={"Accept": "application/dicom; transfer-syntax=*"}, timeout=60)
        except requests.RequestException:
            return None
        return data_set_digest(response.content) if response.status_code == 200 else None

    def _failures(self) -> dict[tuple[str, str], list[str]]:
        failures: dict[tuple[str, str], list[str]] = {}
        for entry in read_journal(self.endpoints().journal("failed")):
            key = (str(entry.get("name")), str(entry.get("generation")))
            failures.setdefault(key, []).append(str(entry.get("reason") or ""))
        for name, generation, reason in self._noted():
            failures.setdefault((name, generation), [reason])  # reported, its message lost with a stack stop
        return failures

    def _noted(self) -> Iterator[tuple[str, str, str]]:
        """(name, generation, reason) of every failure note of an uploaded object."""
        assert self._storage is not None
        for upload in self.uploads:
            self._note_keys.setdefault(FailureNotes.key(INCOMING_BUCKET, upload.name), upload.name)
        with contextlib.suppress(Exception):
            for blob in self._storage.list_blobs(STATE_BUCKET, prefix=f"{STATE_PREFIX}failed/"):
                key, _, generation = (
                    blob.name.removeprefix(f"{STATE_PREFIX}failed/").removesuffix(".json").partition("/")
                )
                name = self._note_keys.get(key)
                if name is None:
                    continue
                if blob.name not in self._note_reasons:
                    self._note_reasons[blob.name] = str(json.loads(blob.download_as_bytes()).get("reason") or "")
                yield name, generation, self._note_reasons[blob.name]

    def sample(self) -> None:
        """RSS, threads and open files of every process group the stack started."""
        with self.lock:
            leaders = {role: process.pid for role, process in self.stack.processes.items()}
        usage = groups_usage(set(leaders.values()))
        at = self.elapsed()
        for role, pid in leaders.items():
            found = usage[pid]
            if found.processes:
                self.samples.append(Sample(at, role, pid, found.rss_kib, found.threads, found.fds, found.sockets))

    def background(self) -> None:
        """Observe every OBSERVE_SECONDS, sample every SAMPLE_SECONDS, until stopped."""
        next_sample, every = 0.0, min(SAMPLE_SECONDS, max(OBSERVE_SECONDS, self.options.run_seconds / 60))
        while not self._stop.wait(OBSERVE_SECONDS):
            with contextlib.suppress(Exception):  # a stack being replaced: the next round
                self.observe()
            if self.elapsed() >= next_sample:
                with contextlib.suppress(Exception):
                    self.sample()
                next_sample = self.elapsed() + every

    # ----- figures -----

    def ledger(self) -> tuple[Counter[str], list[str]]:
        """Objects in the state bucket by kind (batches, inflight, staging, failed, ...), and the batch ids."""
        assert self._storage is not None
        kinds: Counter[str] = Counter()
        batches = []
        with self.lock:
            blobs = list(self._storage.list_blobs(STATE_BUCKET))
        for blob in blobs:
            kind = blob.name.removeprefix(STATE_PREFIX).split("/", 1)[0]
            kinds[kind] += 1
            if kind == "batches" and blob.name.endswith("/manifest.json"):
                batches.append(blob.name.split("/")[-2])
            if (
                kind == "batches"
                and blob.name.endswith("/result.json")
                and blob.name.split("/")[-2] not in self.results
            ):
                body = json.loads(blob.download_as_bytes())
                if body.get("status") == "published":
                    self.results[blob.name.split("/")[-2]] = body
        return kinds, batches

    def operations(self) -> Counter[str]:
        endpoints = self.endpoints()
        dataset = endpoints.store_name.split("/dicomStores/")[0]
        counted: Counter[str] = Counter()
        with contextlib.suppress(Exception):
            for operation in all_operations(endpoints.healthcare_url, dataset):
                kind = "imports" if "Import" in str(operation.get("metadata")) else "exports"
                counted[kind] += 1
                if (operation.get("error") or {}).get("code") == 10:
                    counted[f"{kind} aborted"] += 1
                elif operation.get("error"):
                    counted[f"{kind} with errors"] += 1
        return counted

    def report(self, final: bool = False) -> Tally:
        self.observe()
        counted = tally(self.uploads, self.seen)
        kinds, batches = self.ledger()
        ops = self.operations()
        fired = self.fired + self.fired_now()
        pending = "lost" if final else "pending"
        print(f"\n[soak {_clock(self.elapsed())}] uploaded {counted.uploaded} ({_pairs(counted.by_shape)})", flush=True)
        print(f"  stored with own content {counted.outcomes['stored']}, on dicom-failed {counted.outcomes['failed']} "
              f"(without a reason {counted.without_reason}), absent {counted.outcomes['absent']}; "
              f"{pending} {counted.pending}, doubled {counted.doubled}, unexpected {counted.unexpected}; "
              f"failures reported again at the same generation {counted.repeated_reports}")  # fmt: skip
        wrong = sum(1 for r in self.results.values() if not counts_add_up(r))
        print(
            f"  batches {len(batches)} (results {len(self.results)}, not adding up {wrong}), {_pairs(ops)}; "
            f"store instances {len(self.seen.listed)}"
        )
        print(
            f"  ledger objects {sum(kinds.values())} ({_pairs(kinds)}); in-flight marks {kinds['inflight']}, "
            f"staged copies {kinds['staging']}"
        )
        print(f"  faults: {_pairs(self.events)}; emulator rules fired {_pairs(fired)}")
        print(f"  {'process':<20} {'pid':>8} {'RSS MiB':>8} {'threads':>8} {'fds':>6} {'sockets':>8}")
        latest = {s.role: s for s in self.samples}
        for role, s in sorted(latest.items()):
            print(f"  {role:<20} {s.pid:>8} {s.rss_kib / 1024:>8.1f} {s.threads:>8} {s.fds:>6} {s.sockets:>8}")
        if final:
            self._pubsub_heap()
            unfinished = sorted(set(batches) - set(self.results))
            print(f"  batches without a published result: {len(unfinished)} {unfinished[:10]}")
            for example in counted.pending_examples + counted.unexpected_examples + counted.doubled_examples:
                print(f"    e.g. {example}")
        sys.stdout.flush()
        return counted

    def _pubsub_heap(self) -> None:
        """What the Pub/Sub emulator's heap holds at the end (the reason its RSS is shown, not judged)."""
        with self.lock:
            pid = self.stack.processes["pubsub"].pid
        found = java_live_objects(pid, "com.google.pubsub.v1.PubsubMessage")
        if found is None:
            print("  Pub/Sub emulator heap: not read (jcmd, a JDK tool, is not on PATH or did not answer)")
            return
        messages, live = found
        print(f"  Pub/Sub emulator heap after a full GC: {live / 2**20:.1f} MiB live, holding {messages} messages "
              f"(all this PID was given since it started: it keeps acknowledged ones)")  # fmt: skip

    def series(self) -> None:
        """Each process's RSS / threads / fds at every report time (its samples over the run)."""
        every = self.options.report_every * 60
        print("\nprocesses over time (RSS MiB / threads / open files; * = a new PID since the last column)")
        roles = sorted({s.role for s in self.samples})
        marks = sorted({_nearest(self.samples, t).at for t in _ticks(self.elapsed(), every)})
        print(f"  {'process':<20}" + "".join(f"{_clock(t):>18}" for t in marks))
        for role in roles:
            mine = [s for s in self.samples if s.role == role]
            cells, last_pid = [], None
            for t in marks:
                s = _nearest(mine, t)
                star = "*" if last_pid not in (None, s.pid) else " "
                cells.append(f"{s.rss_kib / 1024:.0f}/{s.threads}/{s.fds}{star}".rjust(18))
                last_pid = s.pid
            print(f"  {role:<20}" + "".join(cells))

    # ----- the run -----

    def run(self) -> int:
        options = self.options
        self.start_stack()
        self.t0 = time.monotonic()
        watcher = threading.Thread(target=self.background, name="soak-observer", daemon=True)
        watcher.start()
        try:
            self._upload_phase()
            self._drain()
            counted = self.report(final=True)
            self.series()
            checks = verdict(counted, list(self.results.values()), self.samples, options.run_seconds)
            if self.stack.failure:
                checks.append(Check("the stack kept running", False, self.stack.failure))
            return _print_verdict(checks)
        finally:
            self._stop.set()
            watcher.join(timeout=60)
            self.stack.stop()

    def _upload_phase(self) -> None:
        options = self.options
        run = options.run_seconds
        next_report, next_kill = options.report_every * 60, options.kill_every * 60
        kills, emulator_at, stack_at, holding_since = 0, run * 0.4, run * 0.65, None
        files = 0
        for unit in self.units():
            if self.elapsed() >= run or self.stack.failure:
                return
            items = unit()
            self.upload(items)
            files += len(items)
            self.deletes += [(self.elapsed() + self.rng.uniform(0, 6), i.name) for i in items if i.shape == "delete"]
            while self.elapsed() < files * 60 / options.rate and self.elapsed() < run:  # the pace
                time.sleep(0.2)
                self.delete_due()
                now = self.elapsed()
                if now >= next_kill:
                    self.kill(KILL_ORDER[kills % len(KILL_ORDER)])
                    self.add_faults(BURST)
                    kills, next_kill = kills + 1, next_kill + options.kill_every * 60
                if now >= emulator_at and holding_since is None:
                    self.add_faults([HOLD])  # hold an import, so the restart interrupts one (ABORTED)
                    holding_since = now
                if (
                    holding_since is not None
                    and emulator_at > 0
                    and (self.fired_now()["operation-delay"] > 0 or now - holding_since > 90)
                ):
                    self._carry_fired()
                    self.kill("healthcare")
                    emulator_at = -1.0
                if now >= stack_at > 0:
                    self.restart_stack()
                    stack_at = -1.0
                if now >= next_report:
                    self.report()
                    next_report += options.report_every * 60

    def _drain(self) -> None:
        """After the uploads: until every upload is in an outcome its shape allows (or --drain-minutes)."""
        deadline = self.elapsed() + self.options.drain_minutes * 60
        print(f"\n[soak {_clock(self.elapsed())}] uploads stopped; draining", flush=True)
        while self.elapsed() < deadline and not self.stack.failure:
            self.delete_due()
            self.observe()
            if tally(self.uploads, self.seen).pending == 0:
                time.sleep(30)  # the last batches publish their results
                return
            time.sleep(OBSERVE_SECONDS)


def _one(item: shapes.Item) -> list[shapes.Item]:
    return [item]


def _nearest(samples: list[Sample], at: float) -> Sample:
    return min(samples, key=lambda s: abs(s.at - at))


def _retry(call: Callable[[], object], attempts: int = 5) -> None:
    for attempt in range(attempts):
        try:
            call()
            return
        except Exception:
            if attempt == attempts - 1:
                raise
            time.sleep(1 + attempt)


def _ticks(end: float, every: float) -> list[float]:
    count = int(end // every)
    return [every * k for k in range(1, count + 1)] + [end]


def _clock(seconds: float) -> str:
    return f"{int(seconds // 60):02d}:{int(seconds % 60):02d}"


def _pairs(counter: Counter[str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counter.items())) or "none"


def _print_verdict(checks: list[Check]) -> int:
    print("\nverdict")
    for check in checks:
        mark = "PASS" if check.passed else "FAIL"
        print(f"  {mark if check.judged else 'NOTE'}  {check.name}: {check.detail}")
    judged = [c for c in checks if c.judged]
    failed = [c for c in judged if not c.passed]
    counted = f"{len(judged)} checks judged, {len(checks) - len(judged)} shown only"
    print(f"\nFAILED ({len(failed)} of {counted})" if failed else f"\nPASSED ({counted})", flush=True)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="how long uploads and faults go on")
    parser.add_argument("--rate", type=float, default=150.0, help="files uploaded a minute")
    parser.add_argument("--report-every", type=float, default=5.0, help="minutes between reports")
    parser.add_argument("--kill-every", type=float, default=4.0, help="minutes between kill -9 of a function")
    parser.add_argument("--drain-minutes", type=float, default=10.0, help="at most this long after the uploads")
    parser.add_argument("--seed", type=int, default=23)
    parser.add_argument("--data-dir", type=Path, help="keep the stack's data here (default: removed if passed)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("dicomflow").setLevel(logging.ERROR)  # the stack's recovery backfill runs in this process
    options = Options(args.minutes, args.rate, args.report_every, args.kill_every, args.drain_minutes, args.seed,
                      args.data_dir)  # fmt: skip
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="soak-"))
    print(f"soak: {options.minutes:g} min at {options.rate:g} files/min, data in {data_dir}", flush=True)
    status = Soak(options, data_dir).run()
    if args.data_dir is None and status == 0:
        shutil.rmtree(data_dir, ignore_errors=True)
    elif status:
        print(f"data kept in {data_dir}")
    return status


if __name__ == "__main__":
    sys.exit(main())

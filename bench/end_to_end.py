"""End to end through the local stack (every function in its own process, the flush timer ticking like Cloud
Scheduler), figures from every batch of the run, beside the floor: one direct ``**`` import plus one export of
the same files against the same emulator, with nothing to wait for.

    python -m bench.end_to_end [throughput] [--instances 1000] [--settle-seconds 2]
        N instances in study folders, uploaded 8 at a time: batches, imports, copies, the critical path split
        into phases, import/export busy time against the floor, per-file latencies.
    python -m bench.end_to_end production [--studies 12] [--gap 15] [--one-pass-too]
        The production shape: a tick every 60 s, SETTLE_SECONDS 30, one study (4 series x 10) every --gap
        seconds; per file upload -> import start and upload -> result, p50/p95 (--one-pass-too: the same with
        FLUSH_RUN_SECONDS=0, one pass per tick, as before the flush run).
    python -m bench.end_to_end drop-folder [--old-files 2000] [--instances 1000]
        New files uploaded into a flat folder already holding --old-files imported ones: imports used, copies,
        seconds, against the floor and against one in-place import of the whole folder.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import posixpath
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.e2e_figures import PendingTap, RunFigures, collect, percentile, wait_for_files
from devstack.client import storage_client
from devstack.stack import EXPORT_BUCKET, INCOMING_BUCKET, LocalStack, StackConfig, StackEndpoints, flush_run_seconds
from devstack.synthetic import SyntheticInstance, generate_dataset
from devstack.timing import PROFILES, OperationClock

LOCATION = "projects/local-project/locations/us-central1"
Uploaded = dict[str, tuple[float, float]]  # object name -> (upload started, upload finished), epoch seconds


# ----- the stack and the uploads -----


@contextlib.contextmanager
def stack(
    settle: float,
    interval: float,
    *,
    intake: int = 0,
    extra_env: Sequence[tuple[str, str]] = (),
    timing: str = "local",
    operations_backoff: tuple[float, float] | None = None,
) -> Iterator[tuple[StackEndpoints, PendingTap]]:
    """The local stack; ``intake`` > 0: finalize notifications reach intake that many at a time (the stack's
    relay, and as many server threads), else 8 at a time (the stack's default). ``timing``: the
    stack's timing profile (devstack.timing); ``operations_backoff``: the watch relay's retry policy instead."""
    threads = (("THREADS", str(intake)),) if intake else ()
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
        config = StackConfig.on_free_ports(
            settle_seconds=settle, max_wait_seconds=600, flush_interval=interval, data_dir=Path(tmp),
            extra_env=(*threads, *extra_env), timing=timing, operations_backoff=operations_backoff,
            **({"intake_deliveries": intake} if intake else {}),
        )  # fmt: skip
        local = LocalStack(config)
        endpoints = local.start()
        try:
            with PendingTap() as tap:
                yield endpoints, tap
        finally:
            local.stop()


def upload(endpoints: StackEndpoints, files: Sequence[tuple[str, bytes]], bucket: str = INCOMING_BUCKET) -> Uploaded:
    target = storage_client(endpoints.storage_host).bucket(bucket)

    def put(item: tuple[str, bytes]) -> tuple[str, tuple[float, float]]:
        began = time.time()
        target.blob(item[0]).upload_from_string(item[1], content_type="application/dicom")
        return item[0], (began, time.time())

    with ThreadPoolExecutor(8) as pool:
        return dict(pool.map(put, files))


# ----- the floor -----


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=60) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


def _wait_operation(base: str, name: str) -> dict[str, Any]:
    while True:
        with urllib.request.urlopen(f"{base}/v1/{name}", timeout=60) as response:
            operation: dict[str, Any] = json.loads(response.read())
        if operation.get("done"):
            return operation
        time.sleep(0.05)


def direct_import(endpoints: StackEndpoints, uri: str, *, export: bool = True) -> dict[str, float]:
    """``uri`` imported into a fresh store by hand, then (``export``) exported: seconds of each."""
    base, dataset = endpoints.healthcare_url, f"floor-{uuid.uuid4().hex[:8]}"
    _post(f"{base}/v1/{LOCATION}/datasets?datasetId={dataset}", {})
    store = f"{LOCATION}/datasets/{dataset}/dicomStores/floor"
    _post(f"{base}/v1/{LOCATION}/datasets/{dataset}/dicomStores?dicomStoreId=floor", {})
    start = time.perf_counter()
    operation = _wait_operation(base, _post(f"{base}/v1/{store}:import", {"gcsSource": {"uri": uri}})["name"])
    imported = time.perf_counter()
    seconds = {"import": imported - start, "files": float(operation["metadata"]["counter"].get("success", 0))}
    if export:
        body = {"gcsDestination": {"uriPrefix": f"gs://{EXPORT_BUCKET}/{dataset}"}}
        _wait_operation(base, _post(f"{base}/v1/{store}:export", body)["name"])
        seconds["export"] = time.perf_counter() - imported
    return seconds


def ideal(timing: str, settle: float, files: Sequence[tuple[str, bytes]]) -> float | None:
    """Under a timing profile: settle + one import + one export of ``files``, as the profile makes them last
    (the emulator's own work is far shorter); None under local timing (the measured floor stands for it)."""
    profile = PROFILES[timing]
    if profile.import_operation is None or profile.export_operation is None:
        return None
    size = sum(len(data) for _, data in files)

    def last(clock: OperationClock) -> float:
        return clock.fixed_seconds + clock.per_file_seconds * len(files) + clock.per_mb_seconds * size / 1e6

    return settle + last(profile.import_operation) + last(profile.export_operation)


def _noticing(figures: RunFigures) -> str:
    lags = [*figures.import_noticed, *figures.export_noticed]
    if not lags:
        return "no export: nothing to measure"
    return (f"operation end -> the follow-up acting on it (imports: until the export started, reconcile included; "
            f"exports: until the result), {len(lags)} operations: p50 {percentile(lags, 0.5):.1f} s, p95 "
            f"{percentile(lags, 0.95):.1f} s, max {max(lags):.1f} s")  # fmt: skip


# ----- scenarios -----


def _header(what: str, settle: float, interval: float, run_seconds: float, intake: int) -> str:
    delivery = f"{intake} at a time (the stack's relay)" if intake else "the stack's notifications relay (8 at a time)"
    return (f"\nEnd to end — {what}; {platform.machine()}, {os.cpu_count()} cores, Python "
            f"{platform.python_version()}; SETTLE_SECONDS={settle:g}, tick every {interval:g} s, "
            f"FLUSH_RUN_SECONDS={run_seconds:g}; finalize events delivered by {delivery}")  # fmt: skip


def _study_files(instances: Sequence[SyntheticInstance], prefix: str) -> list[tuple[str, bytes]]:
    return [(f"{prefix}/{i.relative_path}", i.data) for i in instances]


def throughput(args: argparse.Namespace) -> int:
    count, settle, interval = args.instances, args.settle_seconds, args.flush_interval
    instances = generate_dataset(max(1, count // 100), 4, 25, seed=77)[:count]
    files = _study_files(instances, "bench")
    best = ideal(args.timing, settle, files)
    runs = []
    for name, env, backoff in _follow_variants(args):
        with stack(settle, interval, intake=args.intake_concurrency, extra_env=env, timing=args.timing,
                   operations_backoff=backoff) as (endpoints, tap):  # fmt: skip
            uploaded = upload(endpoints, files)
            wait_for_files(endpoints, uploaded, timeout=args.timeout)
            figures = collect(endpoints, uploaded, tap.queued)
            floor = {} if best is not None else direct_import(endpoints, f"gs://{INCOMING_BUCKET}/bench/**")
        runs.append((name, figures, floor))
    what = f"{count} instances in study folders, timing {args.timing}"
    print(_header(what, settle, interval, flush_run_seconds(interval), args.intake_concurrency))
    for name, figures, floor in runs:
        print(f"\n== follow-up: {name}")
        if best is None:
            _print_run(figures, floor, settle)
        else:
            _print_cloud_run(figures, best)
    return 0


def _follow_variants(args: argparse.Namespace) -> list[tuple[str, tuple[tuple[str, str], ...], Any]]:
    """The follow-up as it is, and (``--redelivery-too``) as it was: no polling, the old retry policy."""
    variants: list[tuple[str, tuple[tuple[str, str], ...], Any]] = [("polling (FOLLOW_POLL_SECONDS=240)", (), None)]
    if args.redelivery_too:
        variants.append(("redelivery only, backoff 10..600 s (before)", (("FOLLOW_POLL_SECONDS", "0"),), (10, 600)))
    return variants


def _print_cloud_run(figures: RunFigures, best: float) -> None:
    print(f"{figures.files} files in {figures.batches} batch(es), {figures.imports} import(s), {figures.copies} "
          f"staged copies ({figures.stage_seconds:.1f} s of copying)")  # fmt: skip
    print(f"\n{'critical path from the first upload':<48}{'seconds':>10}")
    for phase, seconds in figures.milestones.items():
        print(f"{phase:<48}{seconds:>10.2f}")
    print(f"{'total':<48}{figures.total:>10.2f}")
    after_upload = figures.total - figures.milestones["upload"]
    print(f"ideal (SETTLE_SECONDS + one import + one export under the profile): {best:.1f} s; after the last upload "
          f"the run took {after_upload:.1f} s = {after_upload / best:.2f}x (target 1.2x)")  # fmt: skip
    print(_noticing(figures))


def production(args: argparse.Namespace) -> int:
    settle, interval = 30.0, 60.0
    variants: list[tuple[str, tuple[tuple[str, str], ...], Any]] = [
        (f"flush run, {name}", env, backoff) for name, env, backoff in _follow_variants(args)
    ]
    if args.one_pass_too:
        variants.append(("one pass per tick (FLUSH_RUN_SECONDS=0)", (("FLUSH_RUN_SECONDS", "0"),), None))
    if args.marker_too:  # the sender writes _READY into each study folder after its files
        variants.append(("ready marker after each study (_READY)", (("READY_MARKER", "_READY"),), None))
    instances = generate_dataset(args.studies, 4, 10, seed=88)
    studies: dict[str, list[SyntheticInstance]] = {}
    for instance in instances:
        studies.setdefault(instance.study_uid, []).append(instance)
    rows = []
    after_marker: list[float] = []  # per study: its marker's upload -> the last import start of its files
    for name, env, backoff in variants:
        with stack(settle, interval, intake=args.intake_concurrency, extra_env=env, timing=args.timing,
                   operations_backoff=backoff) as (endpoints, tap):  # fmt: skip
            uploaded: Uploaded = {}
            markers: dict[str, float] = {}  # study folder -> marker upload finished
            started = time.monotonic()
            for index, members in enumerate(studies.values()):
                time.sleep(max(0.0, started + index * args.gap - time.monotonic()))
                files = _study_files(members, "modality")
                uploaded |= upload(endpoints, files)
                if dict(env).get("READY_MARKER"):  # not a file of the run: never imported, never counted
                    folder = posixpath.dirname(posixpath.dirname(files[0][0]))
                    markers[folder] = upload(endpoints, [(f"{folder}/_READY", b"")])[f"{folder}/_READY"][1]
            wait_for_files(endpoints, uploaded, timeout=args.timeout)
            figures = collect(endpoints, uploaded, tap.queued)
            rows.append((name, figures))
            for folder, marked in markers.items():
                ours = [t for n, t in figures.import_start.items() if n.startswith(f"{folder}/")]
                after_marker.append(max(ours) - marked)
    what = f"{len(instances)} instances, one study of 40 every {args.gap:g} s, timing {args.timing}"
    print(_header(what, settle, interval, flush_run_seconds(interval), args.intake_concurrency))
    best = ideal(args.timing, settle, _study_files(next(iter(studies.values())), "modality"))
    print(f"{'variant':<42}{'files':>6}{'batches':>8}{'imports':>8}   upload -> import start s"
          f"     upload -> result s")  # fmt: skip
    print(f"{'':<64}{'p50':>7}{'p95':>7}{'max':>7}{'p50':>9}{'p95':>7}{'max':>7}")
    for name, figures in rows:
        start, result = figures.upload_to_import_start, figures.upload_to_result
        print(f"{name:<42}{figures.files:>6}{figures.batches:>8}{figures.imports:>8}"
              f"{percentile(start, 0.5):>7.1f}{percentile(start, 0.95):>7.1f}{max(start):>7.1f}"
              f"{percentile(result, 0.5):>9.1f}{percentile(result, 0.95):>7.1f}{max(result):>7.1f}")  # fmt: skip
    if best is not None:
        print(f"\nideal per file (SETTLE_SECONDS + one import + one export of its study under the profile): "
              f"{best:.1f} s; target: upload -> result p95 within ideal + 15 s = {best + 15:.1f} s")  # fmt: skip
        for name, figures in rows:
            p95 = percentile(figures.upload_to_result, 0.95)
            print(f"  {name}: p95 {p95:.1f} s ({'met' if p95 <= best + 15 else 'missed'}); {_noticing(figures)}")
    target = settle + 5
    met = percentile(rows[0][1].upload_to_import_start, 0.95)
    print(f"\ntarget: upload -> import start within SETTLE_SECONDS + 5 s = {target:g} s at p95: "
          f"{'met' if met <= target else 'missed'} ({met:.1f} s)")  # fmt: skip
    if after_marker:
        worst = max(after_marker)
        print(
            f"ready marker -> the last import start of its study's files, {len(after_marker)} studies: "
            f"p50 {percentile(after_marker, 0.5):.1f} s, p95 {percentile(after_marker, 0.95):.1f} s, max "
            f"{worst:.1f} s; target within one tick ({interval:g} s): {'met' if worst <= interval else 'missed'}"
        )
    return 0


def drop_folder(args: argparse.Namespace) -> int:
    settle, interval = args.settle_seconds, args.flush_interval
    old = generate_dataset(max(1, args.old_files // 100), 4, 25, seed=91)[: args.old_files]
    new = generate_dataset(max(1, args.instances // 100), 4, 25, seed=92)[: args.instances]

    def flat(instances: Sequence[SyntheticInstance], prefix: str) -> list[tuple[str, bytes]]:
        return [(f"{prefix}/{i.sop_uid}.dcm", i.data) for i in instances]

    with stack(settle, interval, intake=args.intake_concurrency) as (endpoints, tap):
        wait_for_files(endpoints, upload(endpoints, flat(old, "drop")), timeout=args.timeout)  # the old files
        uploaded = upload(endpoints, flat(new, "drop"))
        wait_for_files(endpoints, uploaded, timeout=args.timeout)
        figures = collect(endpoints, uploaded, tap.queued)
        upload(endpoints, flat(new, "floor-source"), bucket=EXPORT_BUCKET)  # the new files alone, for the floor
        floor = direct_import(endpoints, f"gs://{EXPORT_BUCKET}/floor-source/**")
        wide = direct_import(endpoints, f"gs://{INCOMING_BUCKET}/drop/**", export=False)
    what = f"{len(new)} new instances into a flat folder holding {len(old)} imported ones"
    print(_header(what, settle, interval, flush_run_seconds(interval), args.intake_concurrency))
    _print_run(figures, floor, settle)
    print(f"one in-place import of the whole folder (gs://{INCOMING_BUCKET}/drop/**) reads "
          f"{wide['files']:.0f} files: {wide['import']:.2f} s against {floor['import']:.2f} s for the new ones "
          f"alone")  # fmt: skip
    return 0


def _print_run(figures: RunFigures, floor: dict[str, float], settle: float) -> None:
    per_import = figures.files / max(figures.imports, 1)
    print(f"{figures.files} files in {figures.batches} batch(es), {figures.imports} import(s) ({per_import:.0f} "
          f"files/import; a per-file trigger: {figures.files}), {figures.copies} staged copies "
          f"({figures.stage_seconds:.1f} s of copying)")  # fmt: skip
    print(f"\n{'critical path from the first upload':<40}{'seconds':>10}")
    for phase, seconds in figures.milestones.items():
        print(f"{phase:<40}{seconds:>10.2f}")
    print(f"{'total':<40}{figures.total:>10.2f}")
    floor_total = floor["import"] + floor["export"]
    print(f"\n{'busy time':<40}{'pipeline s':>10}{'floor s':>10}")
    print(f"{'import':<40}{figures.import_busy:>10.2f}{floor['import']:>10.2f}")
    print(f"{'export':<40}{figures.export_busy:>10.2f}{floor['export']:>10.2f}")
    start, result, queued = figures.upload_to_import_start, figures.upload_to_result, figures.upload_to_queued
    print(f"\nper file, upload -> queued by intake: p50 {percentile(queued, 0.5):.1f} s, "
          f"p95 {percentile(queued, 0.95):.1f} s")  # fmt: skip
    print(f"per file, upload -> import start: p50 {percentile(start, 0.5):.1f} s, "
          f"p95 {percentile(start, 0.95):.1f} s; upload -> result: p50 {percentile(result, 0.5):.1f} s, "
          f"p95 {percentile(result, 0.95):.1f} s")  # fmt: skip
    after_upload = figures.total - figures.milestones["upload"]
    bound = 1.5 * floor_total + settle
    print(f"total / floor (import + export, {floor_total:.2f} s): {figures.total / floor_total:.2f}x; after the last "
          f"upload: {after_upload / floor_total:.2f}x")  # fmt: skip
    print(f"target: total within 1.5 x floor + SETTLE_SECONDS = {bound:.1f} s: "
          f"{'met' if figures.total <= bound else 'missed'} ({figures.total:.1f} s)")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    scenarios = {"throughput": throughput, "production": production, "drop-folder": drop_folder}
    parser.add_argument("scenario", nargs="?", default="throughput", choices=sorted(scenarios))
    parser.add_argument("--instances", type=int, default=1000, help="files uploaded (throughput, drop-folder)")
    parser.add_argument("--settle-seconds", type=float, default=2.0, help="SETTLE_SECONDS (throughput, drop-folder)")
    parser.add_argument("--flush-interval", type=float, default=60.0, help="seconds between ticks (60)")
    parser.add_argument("--old-files", type=int, default=2000, help="files already in the drop folder (2000)")
    parser.add_argument("--studies", type=int, default=12, help="studies of the production run (12)")
    parser.add_argument("--gap", type=float, default=15.0, help="seconds between studies (production, 15)")
    parser.add_argument("--one-pass-too", action="store_true", help="production: also FLUSH_RUN_SECONDS=0")
    parser.add_argument("--marker-too", action="store_true", help="production: also with a _READY marker per study")
    parser.add_argument(
        "--intake-concurrency",
        type=int,
        default=0,
        help="deliver finalize events N at a time, as Eventarc does (0: the stack's 8)",
    )
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for the results")
    parser.add_argument(
        "--timing",
        choices=sorted(PROFILES),
        default="local",
        help="the stack's timing profile (devstack/timing.py): local (default) or cloud",
    )
    parser.add_argument("--redelivery-too", action="store_true",
                        help="throughput, production: also the follow-up before polling (FOLLOW_POLL_SECONDS=0, "
                        "the operations relay backing off 10..600 s)")  # fmt: skip
    args = parser.parse_args(argv)
    return scenarios[args.scenario](args)


if __name__ == "__main__":
    raise SystemExit(main())

"""End to end: N instances uploaded to the local stack until all are exported, with the wall time split into
settle, import, reconcile + export start, export, and report; side by side with the floor — one direct
``gs://bucket/prefix/**`` import plus one export of the same files against the same emulator.

    python -m bench.end_to_end [--instances 1000] [--settle-seconds 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

from devstack.client import operations, read_journal, storage_client
from devstack.processes import free_port
from devstack.stack import EXPORT_BUCKET, INCOMING_BUCKET, LocalStack, StackConfig, StackEndpoints
from devstack.synthetic import generate_dataset


def _seconds(start: str, end: str) -> float:
    return (
        datetime.fromisoformat(end.replace("Z", "+00:00")) - datetime.fromisoformat(start.replace("Z", "+00:00"))
    ).total_seconds()


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


def pipeline_run(endpoints: StackEndpoints, count: int) -> dict[str, float]:
    instances = generate_dataset(max(1, count // 100), 4, 25, seed=77)[:count]
    bucket = storage_client(endpoints.storage_host).bucket(INCOMING_BUCKET)
    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: bucket.blob(f"bench/{i.relative_path}").upload_from_string(i.data), instances))
    uploaded = time.perf_counter()
    exports = storage_client(endpoints.storage_host)
    while sum(1 for _ in exports.list_blobs(EXPORT_BUCKET, prefix="dicom/")) < count:
        time.sleep(0.5)
    while not read_journal(endpoints.journal("results")):
        time.sleep(0.2)
    finished = time.perf_counter()
    [result] = read_journal(endpoints.journal("results"))[-1:]
    dataset = endpoints.store_name.split("/dicomStores/")[0]
    ops = operations(endpoints.healthcare_url, dataset)
    imports = [o for o in ops if o["metadata"]["apiMethodName"].endswith("ImportDicomData")]
    exports_ops = [o for o in ops if o["metadata"]["apiMethodName"].endswith("ExportDicomData")]
    import_end = max(o["metadata"]["endTime"] for o in imports)
    export_start = min(o["metadata"]["createTime"] for o in exports_ops)
    export_end = max(o["metadata"]["endTime"] for o in exports_ops)
    first, created, done = (
        result["timings"]["first_upload"],
        result["timings"]["batch_created"],
        result["timings"]["finished"],
    )
    return {
        "files": float(result["files"]), "imports": float(len(imports)), "upload": uploaded - started,
        "settle": _seconds(first, created), "import": _seconds(created, import_end),
        "reconcile + export start": _seconds(import_end, export_start), "export": _seconds(export_start, export_end),
        "report": _seconds(export_end, done), "total": finished - started,
    }  # fmt: skip


def floor_run(endpoints: StackEndpoints) -> dict[str, float]:
    """The same files, one import and one export issued by hand against the emulator (no settling)."""
    base = endpoints.healthcare_url
    location = "projects/local-project/locations/us-central1"
    _post(f"{base}/v1/{location}/datasets?datasetId=floor", {})
    store = f"{location}/datasets/floor/dicomStores/floor"
    _post(f"{base}/v1/{location}/datasets/floor/dicomStores?dicomStoreId=floor", {})
    start = time.perf_counter()
    _wait_operation(
        base, _post(f"{base}/v1/{store}:import", {"gcsSource": {"uri": f"gs://{INCOMING_BUCKET}/bench/**"}})["name"]
    )
    imported = time.perf_counter()
    export = {"gcsDestination": {"uriPrefix": f"gs://{EXPORT_BUCKET}/floor"}}
    _wait_operation(base, _post(f"{base}/v1/{store}:export", export)["name"])
    done = time.perf_counter()
    return {"import": imported - start, "export": done - imported, "total": done - start}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--settle-seconds", type=float, default=2.0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
        functions = free_port()
        config = StackConfig(
            gcs_port=free_port(), pubsub_port=free_port(), healthcare_port=free_port(), functions_port=functions,
            settle_seconds=args.settle_seconds, max_wait_seconds=120, flush_interval=1.0, data_dir=Path(tmp),
        )  # fmt: skip
        stack = LocalStack(config)
        endpoints = stack.start()
        try:
            pipeline = pipeline_run(endpoints, args.instances)
            floor = floor_run(endpoints)
        finally:
            stack.stop()
    machine = f"{platform.machine()}, Python {platform.python_version()}"
    print(f"\nEnd to end — {int(pipeline['files'])} instances, {machine}, SETTLE_SECONDS={args.settle_seconds}, "
          "flush every 1 s")  # fmt: skip
    print(f"{'phase':<28}{'pipeline s':>12}{'floor s':>10}")
    for phase in ("upload", "settle", "import", "reconcile + export start", "export", "report", "total"):
        floor_value = floor.get(phase)
        print(f"{phase:<28}{pipeline[phase]:>12.2f}{(f'{floor_value:.2f}' if floor_value is not None else '-'):>10}")
    print(f"\nimports used: {int(pipeline['imports'])} for {int(pipeline['files'])} files "
          f"(a per-file trigger: {int(pipeline['files'])}); pipeline / floor (import + export): "
          f"{(pipeline['import'] + pipeline['export']) / floor['total']:.2f}x")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

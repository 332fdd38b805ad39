"""Emulator throughput: one ``**`` import of N small instances vs STOW-RS (batched and one per request).

    python -m bench.emulator_throughput [--instances 1000] [--stow-batch 50] [--emulator-arg ARG ...]

Starts fake-gcs-server and ``python -m healthcare_emulator`` on free ports, generates synthetic instances,
uploads them, then measures each variant against a fresh store and prints instances/s and the ratio to
the one-instance-per-request STOW-RS baseline. Figures, not assertions: machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack.processes import free_port, start_fake_gcs, start_healthcare_emulator
from devstack.synthetic import SyntheticInstance, generate_dataset
from healthcare_emulator.multipart import build_multipart_related

PROJECT, LOCATION = "bench-project", "us-central1"


@dataclass(frozen=True)
class Result:
    variant: str
    instances: int
    seconds: float
    requests: int

    @property
    def rate(self) -> float:
        return self.instances / self.seconds if self.seconds else float("inf")


def _call(method: str, url: str, body: bytes | None = None, content_type: str = "application/json") -> Any:
    request = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=600) as response:
        payload = response.read()
    return json.loads(payload) if payload else None


class Api:
    def __init__(self, base: str) -> None:
        self.base = base
        self.dataset = f"projects/{PROJECT}/locations/{LOCATION}/datasets/bench"
        _call("POST", f"{base}/v1/projects/{PROJECT}/locations/{LOCATION}/datasets?datasetId=bench", b"{}")

    def new_store(self, store_id: str) -> str:
        _call("POST", f"{self.base}/v1/{self.dataset}/dicomStores?dicomStoreId={store_id}", b"{}")
        return f"{self.dataset}/dicomStores/{store_id}"

    def import_and_wait(self, store: str, uri: str) -> dict[str, Any]:
        body = json.dumps({"gcsSource": {"uri": uri}}).encode()
        operation = _call("POST", f"{self.base}/v1/{store}:import", body)
        while not operation.get("done"):
            time.sleep(0.02)
            operation = _call("GET", f"{self.base}/v1/{operation['name']}")
        return dict(operation)

    def stow(self, store: str, parts: Sequence[bytes]) -> None:
        content_type, body = build_multipart_related([("application/dicom", p) for p in parts], "application/dicom")
        _call("POST", f"{self.base}/v1/{store}/dicomWeb/studies", body, content_type)


def _timed(variant: str, count: int, requests: int, work: Callable[[], object]) -> Result:
    start = time.perf_counter()
    work()
    return Result(variant, count, time.perf_counter() - start, requests)


def run(
    instances: list[SyntheticInstance], stow_batch: int, workdir: Path, emulator_args: Sequence[str] = ()
) -> list[Result]:
    gcs_port, hc_port = free_port(), free_port()
    gcs = start_fake_gcs(gcs_port, log_path=workdir / "fake-gcs.log")
    try:
        emulator = start_healthcare_emulator(
            hc_port,
            workdir / "data",
            f"http://127.0.0.1:{gcs_port}",
            log_path=workdir / "emulator.log",
            extra_args=emulator_args,
        )
    except Exception:
        gcs.stop()
        raise
    try:
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        client = storage.Client(
            project=PROJECT,
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=f"http://127.0.0.1:{gcs_port}"),
        )
        bucket = client.create_bucket("bench-bucket")
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: bucket.blob(f"src/{i.relative_path}").upload_from_string(i.data), instances))
        api = Api(f"http://127.0.0.1:{hc_port}")
        datas = [i.data for i in instances]
        per_request, batched, imported = (api.new_store(n) for n in ("per-request", "batched", "imported"))
        batches = [datas[i : i + stow_batch] for i in range(0, len(datas), stow_batch)]
        operation: dict[str, Any] = {}

        def stow_each() -> None:
            for data in datas:
                api.stow(per_request, [data])

        def stow_batched() -> None:
            for batch in batches:
                api.stow(batched, batch)

        def import_all() -> None:
            operation.update(api.import_and_wait(imported, "gs://bench-bucket/src/**"))

        results = [
            _timed("STOW-RS, 1 instance/request", len(datas), len(datas), stow_each),
            _timed(f"STOW-RS, {stow_batch} instances/request", len(datas), len(batches), stow_batched),
            _timed("import gs://bucket/src/** (1 operation)", len(datas), 1, import_all),
        ]
        counter = operation["metadata"].get("counter", {})
        if int(counter.get("success", 0)) != len(datas):
            raise SystemExit(f"import did not store every instance: {counter}")
        return results
    finally:
        emulator.stop()
        gcs.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--stow-batch", type=int, default=50)
    parser.add_argument("--emulator-arg", action="append", default=[], help="passed to the emulator (repeatable)")
    args = parser.parse_args(argv)
    studies = max(1, args.instances // 100)
    instances = generate_dataset(studies, 4, max(1, args.instances // (studies * 4)), seed=7)[: args.instances]
    with tempfile.TemporaryDirectory(prefix="bench-emulator-") as tmp:
        results = run(instances, args.stow_batch, Path(tmp), args.emulator_arg)
    baseline = results[0]
    size = sum(len(i.data) for i in instances) / len(instances)
    print(
        f"\nEmulator throughput — {len(instances)} instances of {size / 1024:.1f} KiB, "
        f"{platform.machine()}, Python {platform.python_version()}"
    )
    print(f"{'variant':<42} {'requests':>8} {'seconds':>8} {'inst/s':>8} {'vs baseline':>11}")
    for result in results:
        print(
            f"{result.variant:<42} {result.requests:>8} {result.seconds:>8.2f} {result.rate:>8.0f} "
            f"{result.rate / baseline.rate:>10.1f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

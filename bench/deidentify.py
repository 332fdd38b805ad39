"""What a de-id target costs (issue 31): operations per batch, and the time from a batch's import end to its
research copy, through the local stack under local and cloud timing.

For each timing profile, two runs side by side on fresh stacks: the stack's GCS export target alone (baseline),
and with the `research` de-id target (`devstack.stack.RESEARCH_TARGET`) after it. Each run uploads --batches
studies of --instances instances, one every --gap seconds (one batch each), and waits for every batch result.
Per run: batches, operations per batch by kind, the batch's upload -> result seconds (p50, max), and with the
de-id target the seconds from the batch's last import end to its de-id operation's end (p50, max).

    python -m bench.deidentify [--batches 3] [--instances 10] [--gap 6] [--timing local cloud]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.e2e_figures import all_operations, epoch, manifests, results
from devstack.client import storage_client
from devstack.stack import INCOMING_BUCKET, LocalStack, StackConfig, StackEndpoints
from devstack.synthetic import generate_dataset
from healthcare_emulator.timing import OPERATION_KINDS


def _kind(operation: dict[str, Any]) -> str:
    """import, export, deidentify; any other operation by its method's name (e.g. DeleteStudy)."""
    method = str(operation["metadata"]["apiMethodName"]).rsplit(".", 1)[-1]
    return OPERATION_KINDS.get(method, method)


def _upload_studies(endpoints: StackEndpoints, batches: int, instances: int, gap: float) -> int:
    bucket = storage_client(endpoints.storage_host).bucket(INCOMING_BUCKET)
    uploaded = 0
    for number in range(batches):
        for instance in generate_dataset(1, 1, instances, seed=100 + number):
            bucket.blob(f"bench/{number}/{instance.relative_path}").upload_from_string(instance.data)
            uploaded += 1
        time.sleep(gap)
    return uploaded


def _wait_results(endpoints: StackEndpoints, batches: int, timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while len(found := results(endpoints)) < batches:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(found)} of {batches} batch results after {timeout:.0f} s")
        time.sleep(1)
    return found


def run(timing: str, research: bool, args: argparse.Namespace) -> dict[str, Any]:
    """One run on a fresh stack: its figures."""
    with tempfile.TemporaryDirectory(prefix="bench-deid-") as tmp:
        config = StackConfig.on_free_ports(settle_seconds=1.0, max_wait_seconds=30.0, flush_interval=1.0,
                                           data_dir=Path(tmp), timing=timing, research=research)  # fmt: skip
        local = LocalStack(config)
        endpoints = local.start()
        try:
            _upload_studies(endpoints, args.batches, args.instances, args.gap)
            found = _wait_results(endpoints, args.batches, args.timeout)
            dataset = endpoints.store_name.split("/dicomStores/")[0]
            operations = {o["name"]: o for o in all_operations(endpoints.healthcare_url, dataset)}
            batches = {m.batch_id: m for m in manifests(endpoints)}
        finally:
            local.stop()
    kinds = Counter(_kind(o) for o in operations.values())
    to_result, to_copy = [], []
    for result in found:
        to_result.append(float(result["timings"].get("seconds_upload_to_finished") or 0))
        copy = next((e for e in result["exports"] if e["target"] == "research"), None)
        manifest = batches.get(result["batch_id"])
        if copy and copy.get("operation") in operations and manifest:
            import_end = max(epoch(operations[i.operation]["metadata"]["endTime"]) for i in manifest.imports)
            to_copy.append(epoch(operations[copy["operation"]]["metadata"]["endTime"]) - import_end)
    return {"batches": len(found), "per_batch": {k: v / max(1, len(found)) for k, v in sorted(kinds.items())},
            "to_result": to_result, "to_copy": to_copy}  # fmt: skip


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):6.1f} {max(values):6.1f}" if values else f"{'-':>6} {'-':>6}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--instances", type=int, default=10, help="instances a batch (one study)")
    parser.add_argument("--gap", type=float, default=6.0, help="seconds between two studies' uploads")
    parser.add_argument("--timing", nargs="+", default=["local", "cloud"], choices=["local", "cloud"])
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args(argv)
    print(f"de-id target: {args.batches} batches of {args.instances} instances; {platform.machine()} "
          f"{platform.python_version()}, {datetime.now(UTC):%Y-%m-%d}")  # fmt: skip
    print(f"{'timing':<7}{'targets':<20}{'batches':>8}  {'operations per batch':<36}"
          f"{'upload->result p50 max':>23}{'import end->copy p50 max':>26}")  # fmt: skip
    baseline: dict[str, float] = {}
    for timing in args.timing:
        for research in (False, True):
            figures = run(timing, research, args)
            per = ", ".join(f"{kind} {count:.1f}" for kind, count in figures["per_batch"].items())
            p50 = statistics.median(figures["to_result"]) if figures["to_result"] else 0.0
            ratio = f" ({p50 / baseline[timing]:.2f}x)" if research and baseline.get(timing) else ""
            baseline.setdefault(timing, p50)
            targets = "gcs + research" if research else "gcs (baseline)"
            print(f"{timing:<7}{targets:<20}{figures['batches']:>8}  {per:<36}"
                  f"{_spread(figures['to_result']):>16}{ratio:>7}{_spread(figures['to_copy']):>26}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

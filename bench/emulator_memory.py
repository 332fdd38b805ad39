"""The emulator's memory under concurrent whole-store QIDO listings (the soak's observer, several at once).

    python -m bench.emulator_memory [--instances 6000] [--threads 4] [--rounds 30] [--data-dir DIR]

Fills a store with N small synthetic instances (straight into a data directory, no HTTP), starts
``python -m healthcare_emulator`` on it (127.0.0.1, a free port), then runs ``--threads`` clients, each
listing the whole store ``--rounds`` times as the soak's observer does
(``GET .../dicomWeb/instances?includefield=00080018``), and prints the server's VmRSS (``/proc/PID/status``)
after a warm-up round, after every quarter of the rounds, and at the end; then the same number of listings
one at a time, the baseline. Figures, not assertions: machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from devstack.processes import free_port, start_healthcare_emulator
from devstack.synthetic import generate_dataset
from healthcare_emulator.instances import parse_instance
from healthcare_emulator.repository import Repository

DATASET = "projects/bench/locations/us-central1/datasets/memory"
STORE = f"{DATASET}/dicomStores/soak"


def fill(data_dir: Path, instances: int) -> int:
    """A store of about ``instances`` instances (10 series of 10 per study), written through the repository."""
    studies = max(1, round(instances / 100))
    repository = Repository(data_dir)
    try:
        repository.insert_resource("datasets", DATASET, DATASET.rsplit("/datasets/", 1)[0], {"name": DATASET})
        repository.insert_resource("stores", STORE, DATASET, {"name": STORE})
        made = generate_dataset(studies, 10, 10, seed=7)
        for item in made:
            repository.store_instance(STORE, parse_instance(item.data), item.data, "STANDARD")
        return len(made)
    finally:
        repository.close()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def listing(base: str) -> int:
    url = f"{base}/v1/{STORE}/dicomWeb/instances?includefield=00080018"
    with urllib.request.urlopen(url, timeout=600) as response:
        return len(json.loads(response.read()))


def concurrent_rounds(base: str, threads: int, rounds: int) -> None:
    errors: list[BaseException] = []

    def client() -> None:
        try:
            for _ in range(rounds):
                listing(base)
        except BaseException as exc:  # reported after the join
            errors.append(exc)

    workers = [threading.Thread(target=client) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if errors:
        raise errors[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=6000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=30, help="listings per thread")
    parser.add_argument("--data-dir", type=Path, help="reuse a filled data directory (filled when empty)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="emulator-memory-") as scratch:
        data_dir = args.data_dir or Path(scratch) / "data"
        if not (data_dir / "index.sqlite3").exists():
            started = time.perf_counter()
            count = fill(data_dir, args.instances)
            print(f"filled {count} instances in {time.perf_counter() - started:.0f} s", flush=True)
        port = free_port()
        emulator = start_healthcare_emulator(port, data_dir, "http://127.0.0.1:9", log_path=Path(scratch) / "log")
        try:
            base = f"http://127.0.0.1:{port}"
            print(f"{platform.machine()}, {platform.python_version()}, {args.threads} threads x {args.rounds}")
            count = listing(base)
            print(f"listed {count} instances; after warm-up: {rss_mib(emulator.pid):.0f} MiB", flush=True)
            quarter = max(1, args.rounds // 4)
            done = 0
            started = time.perf_counter()
            while done < args.rounds:
                step = min(quarter, args.rounds - done)
                concurrent_rounds(base, args.threads, step)
                done += step
                print(f"concurrent: {done * args.threads:4d} listings, {rss_mib(emulator.pid):.0f} MiB", flush=True)
            seconds = time.perf_counter() - started
            print(f"concurrent: {done * args.threads / seconds:.2f} listings/s", flush=True)
            started = time.perf_counter()
            for number in range(1, args.rounds * args.threads + 1):
                listing(base)
                if number % (quarter * args.threads) == 0:
                    print(f"sequential: {number:4d} listings, {rss_mib(emulator.pid):.0f} MiB", flush=True)
            seconds = time.perf_counter() - started
            print(f"sequential: {args.rounds * args.threads / seconds:.2f} listings/s", flush=True)
        finally:
            emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

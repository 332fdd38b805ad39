"""Differential fuzzing of the header sniffer against pydicom, for longer than ``make test`` runs it: mutated
real files (see ``tests/sniff_fuzzing.py``), each read by both; prints the cases, each verdict pair, the
disagreements (the rule broken: a UID read differently, a crash, a read past the limit), and the time and
bytes per input.

    python -m bench.sniff_fuzz [--cases 50000] [--seed N]
"""

from __future__ import annotations

import argparse
import hashlib
import platform
import statistics
import time
import warnings
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from tests.sniff_fuzzing import MAX_BYTES, check, mutated_files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--save", type=Path, default=Path("bench/results/sniff_fuzz"),
                        help="folder for the inputs that broke the rule (named by their SHA-256)")  # fmt: skip
    args = parser.parse_args()
    pairs: Counter[tuple[str, str]] = Counter()
    broken: Counter[str] = Counter()
    seconds: list[float] = []
    furthest = 0

    @seed(args.seed)
    @settings(max_examples=args.cases, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(data=mutated_files(), first_read=st.sampled_from((256, 1024, 65536)))
    def one(data: bytes, first_read: int) -> None:
        nonlocal furthest
        started = time.perf_counter()
        try:
            mine, theirs, read = check(data, first_read)
            pairs[(mine.kind, theirs.kind)] += 1
            furthest = max(furthest, read)
        except Exception as exc:  # the bench counts every broken rule instead of stopping at the first
            broken[f"{type(exc).__name__}: {str(exc)[:160]}"] += 1
            args.save.mkdir(parents=True, exist_ok=True)
            (args.save / f"{hashlib.sha256(data).hexdigest()[:16]}-{first_read}.dcm").write_bytes(data)
        seconds.append(time.perf_counter() - started)

    print(f"sniff fuzz: {args.cases} cases, seed {args.seed}, {platform.processor() or platform.machine()}, "
          f"{time.strftime('%Y-%m-%d')}")  # fmt: skip
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the broken files it reads
        one()
    elapsed = time.perf_counter() - started
    print(f"  ran {len(seconds)} inputs in {elapsed:.0f} s")
    for (mine, theirs), count in sorted(pairs.items(), key=lambda item: -item[1]):
        print(f"  sniffer {mine:9} pydicom {theirs:10} {count:7}")
    print(f"  rule broken: {sum(broken.values())}")
    for what, count in broken.most_common(10):
        print(f"    {count:6} x {what}")
    if broken:
        print(f"  the inputs that broke it: {args.save}/")
    ordered = sorted(seconds)
    p99 = ordered[int(len(ordered) * 0.99)] if ordered else 0.0
    print(f"  per input (both readers): median {statistics.median(ordered) * 1e3:.2f} ms, p99 {p99 * 1e3:.2f} ms, "
          f"max {ordered[-1] * 1e3:.1f} ms; furthest byte the sniffer read {furthest} (limit {MAX_BYTES})")  # fmt: skip


if __name__ == "__main__":
    main()

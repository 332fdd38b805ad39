"""Print the mutation score of the core from mutmut's results (`make mutants` runs it after `mutmut run`).

Reads the ``mutants/**/*.py.meta`` files mutmut writes (one exit code per mutant) and classifies each with
mutmut's own table; the score is killed / (killed + survived), per module and in total. Exit status 1 when
no result is found (mutmut has not run)."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from mutmut.stats import status_by_exit_code

KILLED = ("killed", "timeout", "caught by type check", "segfault")


def module_counts(root: Path) -> dict[str, Counter[str]]:
    counts: dict[str, Counter[str]] = {}
    for meta in sorted(root.rglob("*.py.meta")):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        if codes:
            module = meta.relative_to(root.parent).as_posix().removesuffix(".meta")
            counts[module] = Counter(status_by_exit_code[code] for code in codes.values())
    return counts


def score(counts: Counter[str]) -> tuple[int, int, float]:
    killed = sum(counts[status] for status in KILLED)
    tested = killed + counts["survived"]
    return killed, tested, 100.0 * killed / tested if tested else 0.0


def main() -> int:
    counts = module_counts(Path("mutants") / "dicomflow")
    if not counts:
        print("no mutmut results under mutants/: run `make mutants`", file=sys.stderr)
        return 1
    total: Counter[str] = Counter()
    print(f"{'module':40} {'killed':>7} {'tested':>7} {'score':>7}  untested")
    for module, module_count in counts.items():
        total += module_count
        killed, tested, percent = score(module_count)
        print(f"{module:40} {killed:7} {tested:7} {percent:6.1f}%  {module_count['no tests']}")
    killed, tested, percent = score(total)
    print(f"{'core':40} {killed:7} {tested:7} {percent:6.1f}%  {total['no tests']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Planner benchmark: imports per batch, overshoot, listing calls, planning time and memory, by upload shape
and size, side by side with the two naive plans.

    python -m bench.planner [--sizes 1000,10000,100000] [--plot bench/results/planner.png]

Baselines in the same run: one import per file (what per-file triggers do), and one ``gs://bucket/**`` per
bucket (one import, but it re-imports every old object in the bucket: its overshoot is printed).
"""

from __future__ import annotations

import argparse
import itertools
import platform
import random
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dicomflow.planner import plan_imports
from tests.fakes.bucket import FakeLister

Shape = Callable[[int, random.Random], tuple[set[str], set[str]]]  # (all objects, pending)


def study_folders(n: int, rng: random.Random) -> tuple[set[str], set[str]]:
    """A new upload of whole studies (patient/study/series/instance) next to an archive of old studies."""
    pending = {f"upload-7/P{i // 200:04d}/ST{i // 50 % 4}/SE{i // 10 % 5}/IM{i % 10:04d}.dcm" for i in range(n)}
    old = {f"upload-{u}/P{i // 200:04d}/ST0/SE0/IM{i % 10:04d}.dcm" for u in range(3) for i in range(n // 3)}
    return pending | old, pending


def flat_folder(n: int, rng: random.Random) -> tuple[set[str], set[str]]:
    """One flat folder of n new files, beside another folder of old files."""
    pending = {f"flat/IM{i:06d}.dcm" for i in range(n)}
    return pending | {f"older/IM{i:06d}.dcm" for i in range(n // 10)}, pending


def new_into_old(n: int, rng: random.Random) -> tuple[set[str], set[str]]:
    """New files appended to series folders that already hold old files (numbering continues)."""
    folders = max(1, n // 50)
    objects, pending = set(), set()
    for folder in range(folders):
        old_count = rng.randrange(10, 60)
        for index in range(old_count + 50):
            name = f"series/{folder:05d}/IM{index:05d}.dcm"
            objects.add(name)
            if index >= old_count:
                pending.add(name)
    return objects, pending


def random_trees(n: int, rng: random.Random) -> tuple[set[str], set[str]]:
    """Random folders of random depth; a random half of the files is pending; some sidecars."""
    objects: set[str] = set()
    while len(objects) < 2 * n:
        depth = rng.randrange(1, 5)
        folder = "/".join(f"d{rng.randrange(8)}" for _ in range(depth))
        extension = rng.choice([".dcm", ".dcm", ".dcm", ".json"])
        objects.add(f"{folder}/f{rng.randrange(10**6):06d}{extension}")
    dicom = sorted(o for o in objects if o.endswith(".dcm"))
    return objects, set(rng.sample(dicom, min(n, len(dicom))))


SHAPES: dict[str, Shape] = {
    "study folders": study_folders,
    "flat folder": flat_folder,
    "new into old folders": new_into_old,
    "random trees": random_trees,
}


@dataclass(frozen=True)
class Row:
    shape: str
    pending: int
    objects: int
    imports: int
    stow: int
    overshoot: int
    listing_calls: int
    seconds: float
    peak_mib: float
    star_overshoot: int  # one gs://bucket/** per bucket


def measure(shape: str, n: int, seed: int = 1) -> Row:
    objects, pending = SHAPES[shape](n, random.Random(seed))
    lister = FakeLister(objects)
    tracemalloc.start()
    start = time.perf_counter()
    plan = plan_imports("bench-bucket", pending, lister, listing_cap=max(50_000, 3 * len(objects)))
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    star_overshoot = sum(1 for name in objects if name not in pending)
    return Row(shape, len(pending), len(objects), len(plan.imports), len(plan.staged), plan.overshoot,
               plan.listing_calls, seconds, peak / 2**20, star_overshoot)  # fmt: skip


def print_table(rows: list[Row]) -> None:
    print(f"\nPlanner — {platform.machine()}, Python {platform.python_version()}")
    header = (f"{'shape':<22}{'pending':>9}{'objects':>9}{'imports':>9}{'per-file':>10}{'files/import':>14}"
              f"{'overshoot':>10}{'** overshoot':>14}{'listings':>10}{'plan s':>9}{'peak MiB':>10}")  # fmt: skip
    print(header)
    print("-" * len(header))
    for r in rows:
        per_import = r.pending / max(1, r.imports + r.stow)
        print(
            f"{r.shape:<22}{r.pending:>9}{r.objects:>9}{r.imports:>9}{r.pending:>10}{per_import:>14.0f}"
            f"{r.overshoot:>10}{r.star_overshoot:>14}{r.listing_calls:>10}{r.seconds:>9.3f}{r.peak_mib:>10.1f}"
        )
    print("\nper-file = imports a one-import-per-file trigger would start; ** overshoot = old objects one")
    print("gs://bucket/** import would re-import. Growth of planning time per 10x more files:")
    for shape in SHAPES:
        mine = [r for r in rows if r.shape == shape]
        for small, large in itertools.pairwise(mine):
            growth = large.seconds / max(small.seconds, 1e-9)
            print(f"  {shape:<22} {small.pending:>7} -> {large.pending:>7}: time x{growth:.1f}, "
                  f"imports {small.imports} -> {large.imports}")  # fmt: skip


def plot(rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for shape in SHAPES:
        mine = [r for r in rows if r.shape == shape]
        sizes = [r.pending for r in mine]
        left.plot(sizes, [r.imports + r.stow for r in mine], marker="o", label=shape)
        right.plot(sizes, [r.seconds for r in mine], marker="o", label=shape)
    sizes = sorted({r.pending for r in rows})
    left.plot(sizes, sizes, linestyle="--", color="grey", label="one import per file")
    for axis, title, label in ((left, "Imports per batch", "imports"), (right, "Planning time", "seconds")):
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("pending files")
        axis.set_ylabel(label)
        axis.set_title(title)
        axis.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    print(f"\nplot: {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--plot", type=Path, default=Path("bench/planner.png"))
    args = parser.parse_args(argv)
    rows = [measure(shape, int(size)) for shape in SHAPES for size in args.sizes.split(",")]
    print_table(rows)
    plot(rows, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

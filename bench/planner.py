"""Planner benchmark: imports per batch, copies, overshoot, listing calls, plan and stage time and memory, by
upload shape and size, for STAGING=never (in-place covers only) and STAGING=auto side by side, beside the two
naive plans.

    python -m bench.planner [--sizes 1000,10000,100000] [--shapes "drop folder,..."] [--plot bench/planner.png]

Baselines in the same run: one import per file (what per-file triggers do), and one ``gs://bucket/**`` per
bucket (one import, but it re-imports every old object in the bucket: its overshoot is printed). Each batch
runs through the flush's own planner, slot allocation (5 free slots) and staging code, against an in-memory
bucket with GCS paging whose copies cost nothing: ``stage s`` is the pipeline's own overhead per copy.
"""

from __future__ import annotations

import argparse
import platform
import random
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dicomflow.batching.planner import plan_imports
from dicomflow.batching.selection import allocate
from dicomflow.batching.staging import StagingArea, stage
from dicomflow.messages.records import PendingRecord
from dicomflow.retry import RetryPolicy
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


def _uid(rng: random.Random) -> str:
    return f"2.25.{rng.getrandbits(100)}"


def drop_folder(n: int, rng: random.Random) -> tuple[set[str], set[str]]:
    """A shared drop folder that already holds 200,000 imported files; n new ones land beside them."""
    old = {f"incoming/{_uid(rng)}.dcm" for _ in range(200_000)}
    pending = {f"incoming/{_uid(rng)}.dcm" for _ in range(n)}
    return old | pending, pending


def uid_flat(n: int, rng: random.Random) -> tuple[set[str], set[str]]:
    """Files named by SOP Instance UID in one flat folder, as many old as new."""
    old = {f"by-uid/{_uid(rng)}.dcm" for _ in range(n)}
    pending = {f"by-uid/{_uid(rng)}.dcm" for _ in range(n)}
    return old | pending, pending


def resend_into_series(n: int, rng: random.Random) -> tuple[set[str], set[str]]:
    """Studies re-sent with extra instances (UID names) into their existing series folders."""
    objects: set[str] = set()
    pending: set[str] = set()
    series = max(1, n // 20)
    for index in range(series):
        folder = f"studies/{index // 4:05d}/series{index % 4}"
        objects.update(f"{folder}/{_uid(rng)}.dcm" for _ in range(rng.randrange(20, 80)))
        pending.update(f"{folder}/{_uid(rng)}.dcm" for _ in range(20))
    return objects | pending, pending


def half_new_dates(n: int, rng: random.Random) -> tuple[set[str], set[str]]:
    """Date folders where some of today's studies were already imported: half old, half new studies."""
    objects: set[str] = set()
    pending: set[str] = set()
    studies = max(2, n // 25)
    for study in range(2 * studies):
        folder = f"2026/12/{1 + study % 28:02d}/{_uid(rng)}"
        names = {f"{folder}/SE{s}/IM{i:04d}.dcm" for s in range(5) for i in range(5)}
        objects |= names
        if study % 2:
            pending |= names
    return objects, pending


SHAPES: dict[str, Shape] = {
    "study folders": study_folders,
    "flat folder": flat_folder,
    "new into old folders": new_into_old,
    "random trees": random_trees,
    "drop folder (200k old)": drop_folder,
    "UID-named flat": uid_flat,
    "re-sends into series": resend_into_series,
    "half-new date folders": half_new_dates,
}
MODES = ("never", "auto")
FREE_SLOTS = 5


class CopyCountingBucket(FakeLister):
    """The in-memory bucket, whose server-side copies only count."""

    def __init__(self, names: set[str]) -> None:
        super().__init__(names)
        self.copies = 0

    def copy(self, bucket: str, name: str, generation: str, to_bucket: str, to_name: str) -> None:
        self.copies += 1


@dataclass(frozen=True)
class Row:
    shape: str
    mode: str
    pending: int
    objects: int
    imports: int
    copies: int
    overshoot: int
    listing_calls: int
    plan_seconds: float
    stage_seconds: float
    peak_mib: float
    star_overshoot: int  # one gs://bucket/** per bucket


def _record(name: str) -> PendingRecord:
    return PendingRecord("bench-bucket", name, "1", 1, None, "1", "1", name, "1.2.840.10008.1.2.1", None, "")


def measure(shape: str, n: int, mode: str, seed: int = 1) -> Row:
    """One batch of a shape through the flush's planning, allocation and staging, in one STAGING mode."""
    objects, pending = SHAPES[shape](n, random.Random(seed))
    bucket = CopyCountingBucket(objects)
    tracemalloc.start()
    start = time.perf_counter()
    cap = max(50_000, 3 * len(objects))  # LISTING_CAP raised with the batch, as for batches above 50k files
    plan = plan_imports("bench-bucket", pending, bucket, listing_cap=cap, subtrees_only=mode == "auto")
    # never: every URI is an import the batch needs sooner or later (slots only spread them over ticks)
    allocation = allocate([plan], slots=FREE_SLOTS if mode == "auto" else len(plan.imports) + 1, staging=mode)
    planned = time.perf_counter()
    area = StagingArea("state-bucket", "dicomflow/staging/bench/")
    staged = stage(bucket, area, [_record(name) for _, name in allocation.staged], RetryPolicy())  # type: ignore[arg-type]
    staged_at = time.perf_counter()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    imports = len(allocation.in_place) + (1 if staged.copies else 0)
    star_overshoot = sum(1 for name in objects if name not in pending)
    return Row(shape, mode, len(pending), len(objects), imports, bucket.copies, plan.overshoot, plan.listing_calls,
               planned - start, staged_at - planned, peak / 2**20, star_overshoot)  # fmt: skip


def print_table(rows: list[Row]) -> None:
    print(f"\nPlanner — {platform.machine()}, Python {platform.python_version()}, {FREE_SLOTS} free operation slots")
    header = (f"{'shape':<24}{'mode':>6}{'pending':>8}{'objects':>8}{'imports':>8}{'copies':>8}{'files/imp':>10}"
              f"{'overshoot':>10}{'** over':>9}{'listings':>9}{'plan s':>8}{'stage s':>8}{'MiB':>7}")  # fmt: skip
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r.shape:<24}{r.mode:>6}{r.pending:>8}{r.objects:>8}{r.imports:>8}{r.copies:>8}"
            f"{r.pending / max(1, r.imports):>10.0f}{r.overshoot:>10}{r.star_overshoot:>9}{r.listing_calls:>9}"
            f"{r.plan_seconds:>8.3f}{r.stage_seconds:>8.3f}{r.peak_mib:>7.1f}"
        )
    print("\n** over = old objects one gs://bucket/** import would re-import; a per-file trigger starts 'pending'")
    print("imports. auto vs never, imports per batch:")
    for shape in dict.fromkeys(r.shape for r in rows):
        for size in sorted({r.pending for r in rows if r.shape == shape}):
            pair = {r.mode: r for r in rows if r.shape == shape and r.pending == size}
            if set(pair) == set(MODES):
                never, auto = pair["never"], pair["auto"]
                print(f"  {shape:<24}{size:>8}: {never.imports:>6} -> {auto.imports} "
                      f"({never.imports / max(1, auto.imports):.0f}x fewer), {auto.copies} copies")  # fmt: skip


def plot(rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 5.5))
    for index, shape in enumerate(dict.fromkeys(r.shape for r in rows)):
        colour = f"C{index}"
        for mode, style in (("never", ":"), ("auto", "-")):
            mine = [r for r in rows if r.shape == shape and r.mode == mode]
            sizes = [r.pending for r in mine]
            label = f"{shape} ({mode})"
            left.plot(sizes, [r.imports for r in mine], marker="o", linestyle=style, color=colour, label=label)
            right.plot(sizes, [r.plan_seconds + r.stage_seconds for r in mine], marker="o", linestyle=style,
                       color=colour, label=label)  # fmt: skip
    sizes = sorted({r.pending for r in rows})
    left.plot(sizes, sizes, linestyle="--", color="grey", label="one import per file")
    for axis, title, label in ((left, "Imports per batch", "imports"), (right, "Plan + stage time", "seconds")):
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("pending files")
        axis.set_ylabel(label)
        axis.set_title(title)
        axis.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=6, ncol=2)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    print(f"\nplot: {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated shape names")
    parser.add_argument("--plot", type=Path, default=Path("bench/planner.png"))
    args = parser.parse_args(argv)
    rows = []
    for shape in args.shapes.split(","):
        for size in args.sizes.split(","):
            for mode in MODES:
                rows.append(measure(shape, int(size), mode))
                print(f"  measured {shape} {size} {mode}", flush=True)
    print_table(rows)
    plot(rows, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

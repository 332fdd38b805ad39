"""The soak's bookkeeping, pure: what each uploaded object may become (by its shape), what it became (from the
store, ``dicom-failed`` and the failure notes), and the verdict against issue 23's "done when".

Outcomes of one upload (an object name at one generation):
  stored  its SOP Instance UID is in the store with this upload's own data set (digest after the file meta)
  failed  it was reported on ``dicom-failed`` (journal or failure note)
  absent  neither
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from devstack.checks import counts_add_up


class Outcome(StrEnum):
    STORED = "stored"
    FAILED = "failed"
    ABSENT = "absent"


S, F, A = Outcome.STORED, Outcome.FAILED, Outcome.ABSENT

# What each shape may legitimately become (the README's Soak paragraph says why).
ALLOWED: dict[str, frozenset[Outcome]] = {
    "study": frozenset({S}),  # a new study folder: imported in place
    "drop": frozenset({S}),  # new files in a flat drop folder: staged
    "resend": frozenset({S}),  # identical bytes re-uploaded to the same name after the original was stored
    "conflict": frozenset({F}),  # same UIDs, other bytes, same name, after the original was stored
    "delete": frozenset({S, F, A}),  # deleted 0-6 s after upload: before intake (absent), before staging (failed)...
    "bad": frozenset({F}),  # not DICOM, empty, garbage after DICM
    "media": frozenset({S}),  # an extensionless image of a DICOM media file-set
    "dicomdir": frozenset({A}),  # the file-set's DICOMDIR: skipped, never imported nor reported
}


@dataclass(frozen=True)
class Upload:
    shape: str
    name: str
    generation: str
    uids: tuple[str, str, str] | None = None  # study, series, SOP instance
    digest: str | None = None  # data set digest (devstack content: dicomflow.dicom.content.data_set_digest)
    at: float = 0.0  # seconds into the run

    @property
    def allowed(self) -> frozenset[Outcome]:
        return ALLOWED[self.shape]

    @property
    def key(self) -> tuple[str, str]:
        return self.name, self.generation


@dataclass
class Observation:
    """What the soak saw: the store (SOP -> how often listed, SOP -> stored digest) and the failures."""

    listed: Counter[str] = field(default_factory=Counter)
    digests: dict[str, str] = field(default_factory=dict)
    failures: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # (name, generation) -> reasons


def outcome(upload: Upload, seen: Observation) -> tuple[Outcome, bool]:
    """(outcome, doubled): doubled when it is both stored with its own content and reported failed."""
    stored = upload.uids is not None and upload.digest is not None and seen.digests.get(upload.uids[2]) == upload.digest
    failed = upload.key in seen.failures
    if stored and failed:
        return S, True
    return (S if stored else F if failed else A), False


@dataclass
class Tally:
    uploaded: int = 0
    by_shape: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    pending: int = 0  # not (yet) in an allowed outcome: lost if it stays so after the drain
    unexpected: int = 0  # in an outcome its shape does not allow (stored or failed)
    doubled: int = 0  # an instance listed twice by the store, or a file both stored and reported failed
    repeated_reports: int = 0  # a file reported on dicom-failed again at the same generation (at least once)
    without_reason: int = 0
    unexpected_examples: list[str] = field(default_factory=list)
    pending_examples: list[str] = field(default_factory=list)
    doubled_examples: list[str] = field(default_factory=list)


def tally(uploads: Iterable[Upload], seen: Observation, examples: int = 5) -> Tally:
    """Count every upload's outcome against its shape; doubles also count SOPs listed more than once; a file
    reported on dicom-failed more than once at one generation is counted apart (repeated reports)."""
    result = Tally()
    for upload in uploads:
        got, doubled = outcome(upload, seen)
        result.uploaded += 1
        result.by_shape[upload.shape] += 1
        result.outcomes[got] += 1
        result.doubled += doubled
        if doubled:
            _example(result.doubled_examples, upload, "stored and failed", examples)
        if got in upload.allowed:
            continue
        if got is A:
            result.pending += 1
            _example(result.pending_examples, upload, got, examples)
        else:
            result.unexpected += 1
            _example(result.unexpected_examples, upload, got, examples)
    result.doubled += sum(n - 1 for n in seen.listed.values() if n > 1)
    result.doubled_examples += [f"SOP {sop} listed {n} times" for sop, n in seen.listed.items() if n > 1][:examples]
    result.repeated_reports = sum(len(r) - 1 for r in seen.failures.values() if len(r) > 1)
    result.without_reason = sum(1 for reasons in seen.failures.values() if not all(r.strip() for r in reasons))
    return result


def _example(into: list[str], upload: Upload, got: str, limit: int) -> None:
    if len(into) < limit:
        into.append(f"{upload.shape} {upload.name}#{upload.generation}: {got}")


# ----- processes over time -----


@dataclass(frozen=True)
class Sample:
    at: float  # seconds into the run
    role: str  # pubsub, gcs, healthcare, on_flush, ...
    pid: int
    rss_kib: int
    threads: int
    fds: int
    sockets: int = 0  # of the fds


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str
    judged: bool = True  # False: shown with its reason, neither passing nor failing the soak


RSS_MARGIN = 0.20
# Threads and open files may end this many above their baseline without a leak: function processes open and
# close sockets to the stand-ins, and a process killed every few minutes (11-15 minute lives) was seen ending
# +1..+5 fds above its baseline with nothing leaking.
COUNT_TOLERANCE = 5

# Stand-ins whose memory grows by design with what the run sends them: their RSS is shown, not judged.
RSS_NOT_JUDGED = {
    "pubsub": "not judged: Google's emulator keeps every message it is given, acknowledged or not and "
    "past any retention setting (10,000 acknowledged messages with 10-minute retention were all still held "
    "after 700 s), so its heap grows with the messages of the run",
}


def baseline_window(started: float, ended: float) -> tuple[float, float]:
    """The second sixth of a process's life to its second third (minute 10 to 20 of a process that lives the
    whole hour): RSS is compared with the first sample in it, threads and open files with its median."""
    life = ended - started
    return started + life / 6, started + life / 3


def process_checks(samples: Sequence[Sample], run_seconds: float) -> list[Check]:
    """Per role, each of its processes (a PID: a kill or a restart starts a new one, whose memory starts
    afresh) that lived at least a sixth of the run is judged over its own life: RSS at its end within +20 % of
    its baseline sample; threads and open files leak when they end more than COUNT_TOLERANCE above their
    baseline median AND were still growing in the last third of the life (its median above the middle
    third's), a trend that would grow without bound rather than noise or a step that settled (its end: the
    median of its samples in the last sixth of its life). A role fails when any of its processes fails, or
    when none lived long enough to be judged."""
    checks = []
    for role in sorted({s.role for s in samples}):
        lives = _lives([s for s in samples if s.role == role])
        judged = [life for life in lives if life[-1].at - life[0].at >= run_seconds / 6]
        if not judged:
            checks.append(Check(f"{role} resources", False, f"no process lived {run_seconds / 6:.0f} s"))
            continue
        per_process = [_role_checks(role, life) for life in judged]
        for kind in range(len(per_process[0])):
            of_kind = [process[kind] for process in per_process]
            failed = [check for check in of_kind if not check.passed]
            shown = failed or of_kind[-1:]
            detail = "; ".join(check.detail for check in shown)
            checks.append(Check(of_kind[0].name, not failed, f"{detail} ({len(judged)} of {len(lives)} PIDs judged)",
                                of_kind[0].judged))  # fmt: skip
    return checks


def _lives(samples: Sequence[Sample]) -> list[list[Sample]]:
    """The samples of each PID, in time order, oldest process first."""
    by_pid: dict[int, list[Sample]] = {}
    for sample in sorted(samples, key=lambda s: s.at):
        by_pid.setdefault(sample.pid, []).append(sample)
    return sorted(by_pid.values(), key=lambda life: life[0].at)


def _role_checks(role: str, life: Sequence[Sample]) -> list[Check]:
    started, ended = life[0].at, life[-1].at
    start, end = baseline_window(started, ended)
    window = [s for s in life if start <= s.at <= end] or [min(life, key=lambda s: abs(s.at - start))]
    tail = [s for s in life if s.at >= started + (ended - started) * 5 / 6]
    rss0, rss1 = window[0].rss_kib, statistics.median(s.rss_kib for s in tail)
    pid = f"PID {life[0].pid}, {started / 60:.0f}-{ended / 60:.0f} min"
    rss = f"{pid}: {rss0 / 1024:.1f} -> {rss1 / 1024:.1f} MiB ({_change(rss0, rss1)})"
    unjudged = RSS_NOT_JUDGED.get(role)
    return [
        Check(f"{role} RSS", True, f"{rss}; {unjudged}", judged=False) if unjudged else
        Check(f"{role} RSS", rss1 <= rss0 * (1 + RSS_MARGIN), rss),
        _count_check(f"{role} threads", pid, life, window, tail, lambda s: s.threads),
        _count_check(f"{role} open files", pid, life, window, tail, lambda s: s.fds, _sockets(window, tail)),
    ]  # fmt: skip


def _count_check(
    name: str,
    pid: str,
    life: Sequence[Sample],
    window: Sequence[Sample],
    tail: Sequence[Sample],
    count: Callable[[Sample], int],
    also: str = "",
) -> Check:
    """Threads or open files: a leak is growth beyond the tolerance that is still going on at the end."""
    before, after = statistics.median(map(count, window)), statistics.median(map(count, tail))
    started, ended = life[0].at, life[-1].at
    middle = [count(s) for s in life if started + (ended - started) / 3 <= s.at < started + (ended - started) * 2 / 3]
    last = [count(s) for s in life if s.at >= started + (ended - started) * 2 / 3]
    growing = bool(middle and last) and statistics.median(last) > statistics.median(middle)
    leaking = after - before > COUNT_TOLERANCE and growing
    trend = "still growing" if growing else "not growing at the end"
    return Check(name, not leaking, f"{pid}: {before:g} -> {after:g} ({trend}, tolerance +{COUNT_TOLERANCE}){also}")


def _sockets(window: Sequence[Sample], tail: Sequence[Sample]) -> str:
    """How many of the open files were sockets, baseline -> end (medians)."""
    before, after = statistics.median(s.sockets for s in window), statistics.median(s.sockets for s in tail)
    return f"; sockets {before:g} -> {after:g}"


def _change(before: float, after: float) -> str:
    return f"{(after - before) / before * 100:+.0f} %" if before else "n/a"


# ----- the verdict -----


def verdict(
    counted: Tally, results: Sequence[Mapping[str, Any]], samples: Sequence[Sample], run_seconds: float
) -> list[Check]:
    """Issue 23's "done when", one check each (a failed check fails the soak)."""
    wrong = [r.get("batch_id", "?") for r in results if not counts_add_up(r)]
    return [
        Check("0 lost", counted.pending == 0, f"{counted.pending} lost {counted.pending_examples}"),
        Check("0 doubled", counted.doubled == 0, f"{counted.doubled} doubled {counted.doubled_examples}"),
        Check("every failure with a reason", counted.without_reason == 0, f"{counted.without_reason} without"),
        Check("every outcome one its shape allows", counted.unexpected == 0,
              f"{counted.unexpected} unexpected {counted.unexpected_examples}"),
        Check("counts add up in every batch result", not wrong and bool(results),
              f"{len(results)} results, {len(wrong)} not adding up {wrong[:5]}"),
        *process_checks(samples, run_seconds),
    ]  # fmt: skip

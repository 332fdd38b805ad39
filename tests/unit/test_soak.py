"""The soak's pure parts: each shape's expected outcomes, the tally, the verdict arithmetic, /proc parsing."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from bench.soak_model import (
    Observation,
    Outcome,
    Sample,
    Upload,
    outcome,
    process_checks,
    tally,
    verdict,
)
from bench.soak_probe import Usage, parse_histogram, parse_pgrp, parse_status, process_usage

UIDS = ("2.25.1", "2.25.2", "2.25.3")


def _upload(shape: str, name: str = "soak/a.dcm", generation: str = "1", digest: str | None = "d1") -> Upload:
    return Upload(shape, name, generation, UIDS if digest else None, digest)


def _result(**counts: int) -> dict[str, int]:
    base = {"files": 3, "imported": 2, "duplicates": 0, "failed": 1, "redriven": 0, "skipped": 0}
    return {**base, **counts}


def test_a_file_is_stored_only_with_its_own_content() -> None:
    seen = Observation(listed=Counter({"2.25.3": 1}), digests={"2.25.3": "d1"})
    assert outcome(_upload("study"), seen) == (Outcome.STORED, False)
    # the conflicting overwrite has the same UIDs and other bytes: the store's content is not its own
    assert outcome(_upload("conflict", generation="2", digest="d2"), seen) == (Outcome.ABSENT, False)


def test_a_file_both_stored_and_reported_failed_is_doubled() -> None:
    seen = Observation(digests={"2.25.3": "d1"}, failures={("soak/a.dcm", "1"): ["deleted"]})
    assert outcome(_upload("study"), seen) == (Outcome.STORED, True)
    assert tally([_upload("study")], seen).doubled == 1


def test_each_shape_is_judged_against_its_own_expected_outcomes() -> None:
    seen = Observation(digests={"2.25.3": "d1"}, failures={("soak/c.dcm", "2"): ["conflict"]})
    uploads = [
        _upload("study"),  # stored: expected
        _upload("conflict", "soak/c.dcm", "2", "d2"),  # failed: expected
        _upload("delete", "soak/d.dcm", digest="d9"),  # absent: allowed for a delete
        _upload("dicomdir", "soak/m/DICOMDIR", digest=None),  # absent: expected
        _upload("drop", "soak/e.dcm", digest="d7"),  # absent: lost (pending until the drain ends)
        _upload("bad", "soak/b.dcm", digest=None),  # absent: lost, a bad file must be reported
    ]
    counted = tally(uploads, seen)
    assert counted.pending == 2 and counted.unexpected == 0
    assert counted.outcomes == Counter({"stored": 1, "failed": 1, "absent": 4})


def test_a_valid_file_on_dicom_failed_or_a_reported_dicomdir_is_unexpected() -> None:
    seen = Observation(failures={("soak/a.dcm", "1"): ["reconcile"], ("soak/m/DICOMDIR", "1"): ["intake"]})
    counted = tally([_upload("study"), _upload("dicomdir", "soak/m/DICOMDIR", digest=None)], seen)
    assert counted.unexpected == 2 and counted.pending == 0


def test_doubles_count_sops_listed_twice_and_repeated_failure_reports_are_counted_apart() -> None:
    seen = Observation(listed=Counter({"2.25.3": 2}), failures={("soak/b.dcm", "1"): ["x", "x"], ("o", "1"): [""]})
    counted = tally([], seen)
    assert (counted.doubled, counted.repeated_reports, counted.without_reason) == (1, 1, 1)


def _samples(role: str, rss: list[int], threads: list[int], fds: list[int]) -> list[Sample]:
    step = 600.0 / (len(rss) - 1)
    return [Sample(k * step, role, 1, r, t, f) for k, (r, t, f) in enumerate(zip(rss, threads, fds, strict=True))]


def test_rss_may_grow_20_percent_over_the_baseline() -> None:
    # 600 s run: baseline window 100..200 s (samples at 120 and 180), end = samples at or after 500 s (540, 600)
    steady = _samples("on_flush", [900, 1000, 1000, 1100, 1150, 1200, 1200, 1200, 1200, 1200, 1200],
                      [5, 6, 8, 8, 8, 8, 8, 8, 8, 8, 8], [9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9])  # fmt: skip
    assert all(c.passed for c in process_checks(steady, 600.0))
    leaking = _samples("gcs", [900, 1000, 1000, 1100, 1150, 1200, 1200, 1200, 1200, 1210, 1210],
                       [5, 6, 8, 8, 8, 8, 8, 8, 8, 8, 8], [9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9])  # fmt: skip
    assert [c.name for c in process_checks(leaking, 600.0) if not c.passed] == ["gcs RSS"]


def _life(role: str, minutes: int, fds: Callable[[int], int], threads: Callable[[int], int]) -> list[Sample]:
    """One PID sampled every 30 s over ``minutes`` minutes, RSS flat."""
    return [Sample(k * 30.0, role, 7, 50_000, threads(k), fds(k)) for k in range(minutes * 2 + 1)]


def test_a_steady_process_whose_threads_and_fds_wander_by_a_few_passes() -> None:
    # GIVEN a 13-minute function process (a kill every few minutes) whose sockets to the stand-ins come and
    # go: +3 fds and +2 threads above the baseline at its end, now and then more
    noise = [0, 1, 0, 2, 3, 1, 0, 3, 2, 3]
    life = _life("on_flush", 13, lambda k: 20 + noise[k % 10] + (3 if k > 20 else 0), lambda k: 8 + noise[k % 3])
    # WHEN judged in a 60-minute run THEN it passes
    checks = process_checks(life, 3600.0)
    assert all(c.passed for c in checks), checks


def test_a_process_leaking_one_fd_a_minute_fails() -> None:
    # GIVEN a 30-minute life that opens one file a minute and never closes it, its threads steady
    life = _life("on_finalize", 30, lambda k: 20 + k // 2, lambda k: 8)
    # THEN its open files fail and its threads pass
    assert [c.name for c in process_checks(life, 3600.0) if not c.passed] == ["on_finalize open files"]
    # AND so do threads that leak alike
    threads = _life("gcs", 30, lambda k: 20, lambda k: 8 + k // 2)
    assert [c.name for c in process_checks(threads, 3600.0) if not c.passed] == ["gcs threads"]


def test_a_step_that_settles_is_not_a_leak_but_growth_to_the_end_is() -> None:
    # a pool that opens 10 connections once, in the first third, then stays flat: not a leak
    step = _life("healthcare", 30, lambda k: 20 + (10 if k > 15 else 0), lambda k: 8)
    assert all(c.passed for c in process_checks(step, 3600.0))
    # a leak that starts late (after the baseline) still fails: still growing in the last third
    late = _life("healthcare", 30, lambda k: 20 + max(0, k - 30) // 2, lambda k: 8)
    assert [c.name for c in process_checks(late, 3600.0) if not c.passed] == ["healthcare open files"]


def test_each_pid_is_judged_over_its_own_life_so_a_restart_is_not_growth() -> None:
    # GIVEN a 600 s run whose stack restarts at 300 s: the old process ends small, the new one starts bigger
    # (a larger store to open, a burst of recovery work) and stays flat; a third PID lives 60 s only
    old = [Sample(at, "gcs", 1, 1000, 10, 9) for at in range(0, 300, 30)]
    new = [Sample(at, "gcs", 2, 1600, 22, 12) for at in range(300, 601, 30)]
    brief = [Sample(at, "gcs", 3, 5000, 90, 90) for at in (0.0, 30.0, 60.0)]
    # WHEN judged
    checks = process_checks(old + new + brief, 600.0)
    # THEN each long-lived PID passes against its own baseline and the brief one is left unjudged
    assert all(c.passed for c in checks), checks
    assert "2 of 3 PIDs judged" in checks[0].detail
    # AND a new PID that keeps growing after its own baseline fails
    growing = [Sample(at, "gcs", 2, 1600 + (at - 300) * 2, 22, 12) for at in range(300, 601, 30)]
    assert [c.name for c in process_checks(old + growing, 600.0) if not c.passed] == ["gcs RSS"]


def test_a_process_without_a_baseline_sample_fails() -> None:
    [check] = process_checks([Sample(590.0, "gcs", 1, 10, 1, 1)], 600.0)
    assert not check.passed


def test_the_verdict_fails_on_a_result_that_does_not_add_up_or_no_result_at_all() -> None:
    seen = Observation(digests={"2.25.3": "d1"})
    good = verdict(tally([_upload("study")], seen), [_result()], [], 600.0)
    assert all(c.passed for c in good)
    bad = verdict(tally([_upload("study")], seen), [_result(), _result(imported=3)], [], 600.0)
    assert [c.name for c in bad if not c.passed] == ["counts add up in every batch result"]
    assert not next(c for c in verdict(tally([], seen), [], [], 600.0) if c.name.startswith("counts")).passed


def test_the_verdict_fails_on_a_lost_file() -> None:
    checks = verdict(tally([_upload("drop", digest="d5")], Observation()), [_result()], [], 600.0)
    assert [c.name for c in checks if not c.passed] == ["0 lost"]


def test_proc_status_and_stat_are_parsed() -> None:
    assert parse_status("Name:\tpython\nVmRSS:\t  123456 kB\nThreads:\t7\n") == (123456, 7)
    assert parse_status("Name:\tzombie\n") == (0, 0)
    assert parse_pgrp("4242 (gunicorn: worker (x)) S 4200 4100 4100 0 -1") == 4100


def test_process_usage_counts_the_sockets_among_the_open_files(tmp_path: Path) -> None:
    # a /proc of one process: 3 open files, 2 of them sockets (a fake: the test process's own fds move)
    fds = tmp_path / "42" / "fd"
    fds.mkdir(parents=True)
    (tmp_path / "42" / "status").write_text("Name:\tpython\nVmRSS:\t  2048 kB\nThreads:\t3\n")
    for fd, target in {"0": "/dev/null", "3": "socket:[1001]", "4": "socket:[1002]"}.items():
        os.symlink(target, fds / fd)
    assert process_usage(42, tmp_path) == Usage(rss_kib=2048, threads=3, fds=3, processes=1, sockets=2)
    assert process_usage(43, tmp_path) == Usage()  # gone


def test_the_pubsub_emulator_rss_is_shown_not_judged_but_its_threads_and_files_are() -> None:
    # GIVEN a Pub/Sub emulator whose heap grows with the messages it keeps, and whose open files leak
    life = _life("pubsub", 30, lambda k: 20 + k // 2, lambda k: 8)
    grown = [Sample(s.at, s.role, s.pid, 200_000 + int(s.at) * 100, s.threads, s.fds, s.sockets) for s in life]
    # WHEN judged
    checks = {c.name: c for c in process_checks(grown, 3600.0)}
    # THEN its RSS is shown with the reason and neither passes nor fails; its open files still fail
    rss = checks["pubsub RSS"]
    assert not rss.judged and "keeps every message" in rss.detail and "MiB" in rss.detail
    assert checks["pubsub open files"].judged and not checks["pubsub open files"].passed


def test_a_class_histogram_gives_the_instances_of_a_class_and_the_live_heap() -> None:
    text = """12345:
 num     #instances         #bytes  class name (module)
-------------------------------------------------------
   1:        187577       32680240  [B (java.base@17.0.15)
   5:         40001        2240056  com.google.pubsub.v1.PubsubMessage
Total        700000       61234567
"""
    assert parse_histogram(text, "com.google.pubsub.v1.PubsubMessage") == (40001, 61234567)
    assert parse_histogram(text, "no.such.Class") == (0, 61234567)
    assert parse_histogram("12345: no such process", "x") is None

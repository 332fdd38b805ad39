"""The flush run of one tick (``run_flush_for``) on a fake clock: passes until the deadline, pauses until the
next folder settles, hand-over before the next tick, failures of one pass. No real time passes."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from dicomflow.config.settings import Settings
from dicomflow.errors import PermissionDeniedError, RetryableError
from dicomflow.ports import ReceivedMessage
from dicomflow.stages.flush import MAX_PAUSE, MIN_PAUSE, FlushReport, FlushRun, pause_after, run_flush_for
from tests.unit.test_flush import NOW, World, _AnyUri, _record, _settings


class FakeTime:
    """A monotonic clock and a wall clock that move only when the run sleeps (or a pull takes time)."""

    def __init__(self) -> None:
        self.elapsed = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.elapsed

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.elapsed += seconds

    def now(self) -> datetime:
        return NOW + timedelta(seconds=self.elapsed)


class SlowPulls:
    """Wraps a subscriber: every pull takes ``seconds`` of fake time and is remembered with its start."""

    def __init__(self, inner: Any, time: FakeTime, seconds: float) -> None:
        self.inner, self.time, self.seconds = inner, time, seconds
        self.started: list[float] = []

    def pull(self, subscription: str, max_messages: int, **bounds: Any) -> list[ReceivedMessage]:
        self.started.append(self.time.elapsed)
        self.time.elapsed += self.seconds
        messages: list[ReceivedMessage] = self.inner.pull(subscription, max_messages, **bounds)
        return messages

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _run(world: World, time: FakeTime, settings: Settings, subscriber: Any = None) -> FlushRun:
    return run_flush_for(
        settings, subscriber=subscriber or world.subscriber, publisher=world.publisher, store=world.store,
        healthcare=world.healthcare, now=time.now, clock=time.clock, sleep=time.sleep,
    )  # fmt: skip


def test_flush_run_imports_a_folder_that_settles_during_the_run() -> None:
    # GIVEN a folder whose last upload is 10 s old (SETTLE_SECONDS 30) when the tick arrives
    world, time = World(["up/a.dcm", "up/b.dcm", "old/c.dcm"]), FakeTime()
    world.queue(_record("up/a.dcm", 12), _record("up/b.dcm", 10))
    # WHEN one invocation runs for 55 s
    run = _run(world, time, _settings(flush_run_seconds=55))
    # THEN the folder is imported in the pass 20 s in, when it settled, not at the next tick
    [batch] = [r for r in run.passes if r.batch_id]
    assert batch.batch_id == run.batches[0] and batch.batch_id.startswith("20261128T120020Z")
    assert world.healthcare.imports == ["gs://src-bucket/up/**.dcm"]
    assert sorted(world.subscriber.acked) == ["ack-1", "ack-2"]
    # and it waited for it in pauses of at most MAX_PAUSE, then idled until the deadline
    assert sum(time.sleeps[: run.passes.index(batch)]) == 20
    assert max(time.sleeps) <= MAX_PAUSE
    assert run.seconds == time.elapsed <= 55


def test_flush_run_pauses_exactly_until_the_next_folder_settles() -> None:
    world, time = World(["up/a.dcm"]), FakeTime()
    world.queue(_record("up/a.dcm", 1))
    run = _run(world, time, _settings(settle_seconds=3.0, flush_run_seconds=10))
    assert time.sleeps[0] == 2.0
    assert run.passes[0].next_ready_seconds == 2.0 and run.passes[0].imports_started == 0
    assert run.passes[1].imports_started == 1


def test_flush_run_of_zero_seconds_is_one_pass() -> None:
    world, time = World(["up/a.dcm"]), FakeTime()
    world.queue(_record("up/a.dcm", 1))
    run = _run(world, time, _settings(flush_run_seconds=0))
    assert len(run.passes) == 1 and time.sleeps == []
    assert world.healthcare.imports == [] and len(world.subscriber.available) == 1


def test_flush_run_starts_no_pass_it_cannot_finish_before_the_deadline() -> None:
    # GIVEN pulls that take 4 s each and a run of 20 s
    world, time = World([]), FakeTime()
    slow = SlowPulls(world.subscriber, time, 4.0)
    run = _run(world, time, _settings(flush_run_seconds=20), slow)
    # THEN every pass ended by the deadline and the run handed over at it, not a pass later
    assert time.elapsed <= 20
    assert all(start + 4.0 <= 20 for start in slow.started)
    assert len(run.passes) == len(slow.started) >= 3
    assert time.elapsed > 20 - 4.0 - MAX_PAUSE


def test_flush_run_pulls_again_at_once_after_a_full_batch() -> None:
    world, time = World(["a/1.dcm", "a/2.dcm", "a/3.dcm"]), FakeTime()
    world.queue(_record("a/1.dcm", 60), _record("a/2.dcm", 60), _record("a/3.dcm", 60))
    run = _run(world, time, _settings(max_batch_files=2, flush_run_seconds=10))
    assert time.sleeps[0] == 0.0
    assert [r.imported_files for r in run.passes[:2]] == [2, 1]
    assert len(world.subscriber.acked) == 3


def test_flush_run_goes_on_after_a_transient_failure_of_one_pass() -> None:
    # GIVEN a watch that cannot be published in the first pass
    world, time = World(["a/1.dcm"]), FakeTime()
    world.queue(_record("a/1.dcm", 60))
    world.publisher.fail_topics.add("dicom-operations")
    original = time.sleep

    def recover(seconds: float) -> None:
        world.publisher.fail_topics.clear()
        original(seconds)

    time.sleep = recover  # type: ignore[method-assign]
    # WHEN the run goes on
    run = _run(world, time, _settings(flush_run_seconds=20))
    # THEN the next pass imports the file (the failed pass's records came back) and the run does not fail
    assert time.sleeps[0] == MAX_PAUSE
    assert len(run.batches) == 1 and world.subscriber.acked == ["ack-1"]


def test_flush_run_raises_when_its_last_pass_failed() -> None:
    world, time = World(["a/1.dcm"]), FakeTime()
    world.queue(_record("a/1.dcm", 60))
    world.publisher.fail_topics.add("dicom-operations")
    with pytest.raises(RetryableError, match="publishing to dicom-operations failed"):
        _run(world, time, _settings(flush_run_seconds=20))
    assert world.subscriber.acked == [] and len(world.subscriber.available) == 1


def test_flush_run_ends_at_a_permanent_refusal() -> None:
    world, time = World(["a/1.dcm"]), FakeTime()
    world.queue(_record("a/1.dcm", 60))
    world.healthcare.refuse_imports = _AnyUri(PermissionDeniedError("HTTP 403: denied", 403))
    with pytest.raises(PermissionDeniedError):
        _run(world, time, _settings(flush_run_seconds=55))
    assert time.sleeps == [] and len(world.subscriber.available) == 1


@pytest.mark.parametrize(
    ("pulled", "next_ready", "settle", "expected"),
    [
        (10, None, 30.0, 0.0),  # a full batch (MAX_BATCH_FILES 10): more may wait
        (3, 2.5, 30.0, 2.5),  # until the next folder settles
        (3, 0.01, 30.0, MIN_PAUSE),  # never a busy loop
        (3, 25.0, 30.0, MAX_PAUSE),  # late arrivals are seen within MAX_PAUSE
        (0, None, 1.0, 1.0),  # nothing held: a folder seen later is ready SETTLE_SECONDS later at the soonest
        (0, None, 0.0, MIN_PAUSE),
    ],
)
def test_pause_after_a_pass(pulled: int, next_ready: float | None, settle: float, expected: float) -> None:
    report = FlushReport(pulled=pulled, next_ready_seconds=next_ready)
    assert pause_after(report, _settings(max_batch_files=10, settle_seconds=settle, max_wait_seconds=600)) == expected

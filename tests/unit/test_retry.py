"""Retry of transient API answers: how many attempts, how long between them, what is logged."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

import pytest

from dicomflow.errors import PermanentError, RetryableError
from dicomflow.retry import RetryPolicy, call_with_retry


class _Ceiling(random.Random):
    """Draws the top of every jitter range, so the test sees each backoff ceiling."""

    def uniform(self, a: float, b: float) -> float:
        self.ranges.append((a, b))
        return b

    def __init__(self) -> None:
        super().__init__(0)
        self.ranges: list[tuple[float, float]] = []


def _failing(times: int, error: Exception) -> tuple[list[int], Callable[[], str]]:
    calls: list[int] = []

    def call() -> str:
        calls.append(1)
        if len(calls) <= times:
            raise error
        return "ok"

    return calls, call


def test_backoff_doubles_from_the_initial_delay_up_to_its_ceiling_with_full_jitter() -> None:
    rng = _Ceiling()
    policy = RetryPolicy(attempts=8, initial_delay=0.5, max_delay=4.0)
    assert [policy.delay(attempt, rng) for attempt in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert all(low == 0 for low, _ in rng.ranges)  # full jitter: anywhere from no wait to the ceiling


def test_a_transient_error_is_retried_until_it_succeeds_sleeping_between_attempts() -> None:
    calls, call = _failing(2, RetryableError("503"))
    slept: list[float] = []
    result = call_with_retry("import", call, RetryPolicy(attempts=3), sleep=slept.append, rng=_Ceiling())
    assert result == "ok" and len(calls) == 3 and slept == [0.5, 1.0]


def test_the_last_attempt_raises_the_transient_error_after_exactly_the_policys_attempts() -> None:
    calls, call = _failing(10, RetryableError("429"))
    slept: list[float] = []
    with pytest.raises(RetryableError, match="429"):
        call_with_retry("import", call, RetryPolicy(attempts=4), sleep=slept.append, rng=_Ceiling())
    assert len(calls) == 4 and len(slept) == 3


def test_a_permanent_error_is_not_retried() -> None:
    calls, call = _failing(1, PermanentError("403"))
    slept: list[float] = []
    with pytest.raises(PermanentError):
        call_with_retry("import", call, RetryPolicy(attempts=4), sleep=slept.append)
    assert len(calls) == 1 and slept == []


def test_each_retry_is_logged_with_what_failed_the_attempt_and_the_wait(caplog: pytest.LogCaptureFixture) -> None:
    _, call = _failing(1, RetryableError("503 from the API"))
    with caplog.at_level(logging.WARNING, logger="dicomflow.retry"):
        call_with_retry("dicomStores.import", call, RetryPolicy(attempts=2), sleep=lambda _: None, rng=_Ceiling())
    [record] = caplog.records
    assert record.getMessage() == "dicomStores.import failed transiently, retrying"
    assert record.fields == {"attempt": 1, "delay_seconds": 0.5, "error": "503 from the API"}  # type: ignore[attr-defined]

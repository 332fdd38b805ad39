"""Exponential backoff with full jitter, bounded, for transient API answers (429, 5xx, timeouts)."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from dicomflow.errors import RetryableError
from dicomflow.logs import fields

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    initial_delay: float = 0.5
    max_delay: float = 16.0
    multiplier: float = 2.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, min(max, initial * multiplier^(attempt-1))]."""
        return rng.uniform(0, min(self.max_delay, self.initial_delay * self.multiplier ** (attempt - 1)))


def call_with_retry(
    what: str,
    call: Callable[[], T],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> T:
    """Run ``call``; on RetryableError wait and try again, up to ``policy.attempts`` times in all."""
    rng = rng or random.Random()
    attempt = 1
    while True:
        try:
            return call()
        except RetryableError as exc:
            if attempt >= policy.attempts:
                raise
            delay = policy.delay(attempt, rng)
            log.warning(
                "%s failed transiently, retrying",
                what,
                extra=fields(attempt=attempt, delay_seconds=round(delay, 3), error=str(exc)),
            )
            sleep(delay)
            attempt += 1

"""Retry policy: exponential backoff with jitter and a cap. A pure function of the attempt number."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Delay before retry n (1-based) is `min(cap, base * 2**(n-1))`, scaled by a jitter in [1-jitter, 1].

    Jitter spreads a burst of failures so retries do not arrive as a second burst ("equal jitter"
    with a configurable share; 0 disables it, which tests use for exact delays).
    """

    base: float = 1.0
    cap: float = 300.0
    jitter: float = 0.5

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        exponent = min(max(attempt - 1, 0), 62)  # 2**62 already exceeds any cap; avoids float overflow
        raw = min(self.cap, self.base * (2.0**exponent))
        return raw * (1.0 - self.jitter * rand())


DEFAULT_RETRY = RetryPolicy()


MAX_RETRY_AFTER = 86_400.0  # seconds a Retry may ask for at most: a day (a longer wait is a schedule's job)


class Retry(Exception):
    """Raised by a handler when a downstream says "slow down" (a 429, a Retry-After): the task is run again
    `after` seconds from now, and the attempt is given back: it is neither a failure nor an attempt used
    (exported as hexq.Retry). Bounded: past its type's `max_deferrals` a Retry counts as a failed attempt,
    so a task that always asks to wait ends in the dead-letter queue like any other.
    """

    def __init__(self, after: float = 1.0, reason: str = "") -> None:
        if isinstance(after, bool) or not isinstance(after, int | float) or not math.isfinite(after):
            raise TypeError(f"Retry(after=...) takes seconds as a number, not {after!r}")
        self.after = min(max(float(after), 0.0), MAX_RETRY_AFTER)
        self.reason = reason
        super().__init__(f"retry in {self.after:g}s" + (f": {reason}" if reason else ""))

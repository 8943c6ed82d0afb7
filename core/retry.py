"""Retry policy: exponential backoff with jitter and a cap. A pure function of the attempt number."""

from __future__ import annotations

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

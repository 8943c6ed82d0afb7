"""Token buckets: the arithmetic every RateLimiter adapter shares, and rate strings like "100/s".

A bucket holds up to `burst` tokens and gains `rate` tokens a second. A request takes one token;
with none left it is refused and told how long until one is there. A bucket nobody has used starts
full, so a new client may send `burst` requests at once. The Redis adapter repeats `take` in Lua
(scripts/ratelimit.lua); keep the two in step.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

# A microsecond of slack: waiting exactly the returned seconds must be enough, although a double near
# the epoch's 1.7e9 s only resolves about 0.2 us (and 0.1 s elapsed may come out as 0.0999999 s).
SLACK_SECONDS = 1e-6
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:/\s*(s|sec|second|m|min|minute|h|hour))?\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}


@dataclass(frozen=True, slots=True)
class Bucket:
    tokens: float
    updated: float  # when `tokens` was last computed, in the limiter's clock


def take(bucket: Bucket | None, now: float, rate: float, burst: int) -> tuple[Bucket, float]:
    """Refill `bucket` up to `now` and try to take one token.

    Returns the new state and 0.0 if the token was taken, else the seconds until one will be there.
    A clock that went backwards (another process, another server) refills nothing.
    """
    check(rate, burst)
    if bucket is None:
        tokens = float(burst)
    else:
        tokens = min(float(burst), bucket.tokens + max(0.0, now - bucket.updated) * rate)
    if tokens + rate * SLACK_SECONDS >= 1.0:
        return Bucket(max(0.0, tokens - 1.0), now), 0.0
    return Bucket(tokens, now), (1.0 - tokens) / rate


def check(rate: float, burst: int) -> None:
    """Raise ValueError unless `rate` is a finite number above 0 and `burst` an integer of at least 1."""
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not math.isfinite(rate) or rate <= 0:
        raise ValueError(f"rate must be a finite number above 0, not {rate!r}")
    if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
        raise ValueError(f"burst must be an integer of at least 1, not {burst!r}")


def parse_rate(text: str) -> float:
    """"100/s", "6000/min", "10/h" or a bare "100" (per second) -> requests per second; "0" means no limit.

    Raises ValueError for anything else.
    """
    match = _RATE.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a rate; use e.g. 100/s, 6000/min or 10/h (0 for no limit)")
    per_second = float(match[1]) / _UNIT_SECONDS[(match[2] or "s").lower()]
    if not math.isfinite(per_second):
        raise ValueError(f"{text!r} is out of range")
    return per_second

"""Token buckets: the arithmetic every RateLimiter adapter shares, and rate strings like "100/s".

A bucket holds up to `burst` tokens and gains `rate` tokens a second. A request takes one token;
with none left it is refused and told how long until one is there. A bucket nobody has used starts
full, so a new client may send `burst` requests at once. The Redis adapter repeats `take` in Lua
(scripts/ratelimit.lua); keep the two in step.
"""

from __future__ import annotations

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


MAX_RATE = 1e9  # tokens a second; more is no limit at all, and far past it float arithmetic breaks down
MAX_BURST = 1_000_000_000  # float(burst) must stay exact and finite: a 400-digit burst raised OverflowError


def check(rate: float, burst: int) -> None:
    """Raise ValueError unless `rate` is a number above 0 and at most MAX_RATE and `burst` an integer
    from 1 to MAX_BURST."""
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate <= MAX_RATE:
        raise ValueError(f"rate must be a number above 0 and at most {MAX_RATE:g} a second, not {rate!r}")
    if isinstance(burst, bool) or not isinstance(burst, int) or not 1 <= burst <= MAX_BURST:
        raise ValueError(f"burst must be an integer from 1 to {MAX_BURST}, not {burst!r}")


def parse_rate(text: str) -> float:
    """"100/s", "6000/min", "10/h" or a bare "100" (per second) -> requests per second; "0" means no limit.

    Raises ValueError for anything else.
    """
    match = _RATE.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a rate; use e.g. 100/s, 6000/min or 10/h (0 for no limit)")
    per_second = float(match[1]) / _UNIT_SECONDS[(match[2] or "s").lower()]
    # A huge number overflows to inf; a tiny positive one underflows to 0, which would mean "no limit".
    if not per_second <= MAX_RATE or (per_second == 0 and match[1].strip("0.") != ""):
        raise ValueError(f"{text[:40]!r} is out of range: a rate is 0 (no limit) or above 0 and at most {MAX_RATE:g}/s")
    return per_second

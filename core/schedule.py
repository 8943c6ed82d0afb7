"""Recurring schedules: cron expressions and `@every <duration>`.

Cron arithmetic comes in as a function (`CronNext`) so core stays on the standard library;
the composition root passes one built on croniter. `@every` is simple enough to do here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from hexq.core.errors import ValidationError
from hexq.core.model import JSON, Priority

CronNext = Callable[[str, float], float]
"""(cron expression, after epoch seconds) -> next fire time in epoch seconds (UTC); raises ValueError.
next_fire trusts neither: any exception it raises and any result out of range is a bad spec."""

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_EVERY = re.compile(r"^@every\s+((?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+)$")
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
MIN_INTERVAL = 1.0
MAX_FIRE_TIME = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()
"""The latest fire time: the last second that datetime and ISO-8601 can show (year 9999, UTC).
A spec whose next fire is later, or not a finite time at all, is refused, so none is ever stored."""
_LATEST = datetime.fromtimestamp(MAX_FIRE_TIME, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Schedule:
    """Fires a task of `type` each time `spec` comes due. `next_run` is the fencing value for firing."""

    name: str
    spec: str
    type: str
    payload: Mapping[str, JSON] = field(default_factory=dict)
    queue: str = "default"
    priority: Priority = Priority.NORMAL
    next_run: float = 0.0
    last_run: float | None = None
    enabled: bool = True
    tenant: str = "default"


def parse_every(spec: str) -> float | None:
    """Seconds of an `@every 1h30m` spec, or None when spec is not an @every spec."""
    match = _EVERY.match(spec.strip())
    if not match:
        return None
    return sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(match.group(1)))


def next_fire(spec: str, after: float, cron_next: CronNext) -> float:
    """The first fire time strictly after `after` and at most MAX_FIRE_TIME.

    Raises ValidationError (field "spec") for a bad spec, and for one whose next fire is outside
    that range: `@every 99999999999999999d`, or a cron expression that never fires again.
    """
    if not isinstance(spec, str):
        raise ValidationError("spec must be a string", field="spec")
    interval = parse_every(spec)
    if interval is not None:
        if not interval >= MIN_INTERVAL:
            raise ValidationError(f"@every interval must be at least {MIN_INTERVAL:g}s", field="spec")
        return _in_range(spec, after, after + interval)
    if spec.startswith("@every"):
        raise ValidationError(f"bad @every spec {spec[:64]!r}; use e.g. '@every 30s' or '@every 1h30m'",
                              field="spec")
    try:
        fire = cron_next(spec, after)
    except Exception as exc:  # an injected parser may raise anything for a bad expression; none is a 500
        raise ValidationError(f"bad cron spec {spec[:64]!r}: {_reason(exc)}", field="spec") from exc
    return _in_range(spec, after, fire)


def _in_range(spec: str, after: float, fire: object) -> float:
    # Compared, not converted: a huge int or NaN fails the comparison instead of raising.
    if isinstance(fire, bool) or not isinstance(fire, int | float) or not after < fire <= MAX_FIRE_TIME:
        raise ValidationError(f"spec {spec[:64]!r} has no next fire time from now to {_LATEST}, the latest "
                              "hexq can schedule", field="spec")
    return float(fire)


def _reason(exc: Exception) -> str:
    try:
        text = str(exc)
    except Exception:  # an exception whose __str__ itself fails
        text = ""
    return text[:200] or type(exc).__name__

"""Recurring schedules: cron expressions and `@every <duration>`.

Cron arithmetic comes in as a function (`CronNext`) so core stays on the standard library;
the composition root passes one built on croniter. `@every` is simple enough to do here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from core.errors import ValidationError
from core.model import JSON, Priority

CronNext = Callable[[str, float], float]
"""(cron expression, after epoch seconds) -> next fire time in epoch seconds (UTC); raises ValueError."""

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_EVERY = re.compile(r"^@every\s+((?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+)$")
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
MIN_INTERVAL = 1.0


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
    """The first fire time strictly after `after`; raises ValidationError for a bad spec."""
    interval = parse_every(spec)
    if interval is not None:
        if interval < MIN_INTERVAL:
            raise ValidationError(f"@every interval must be at least {MIN_INTERVAL:g}s", field="spec")
        return after + interval
    if spec.startswith("@every"):
        raise ValidationError(f"bad @every spec {spec!r}; use e.g. '@every 30s' or '@every 1h30m'", field="spec")
    try:
        return cron_next(spec, after)
    except (ValueError, KeyError) as exc:
        raise ValidationError(f"bad cron spec {spec!r}: {exc}", field="spec") from exc

"""Small pure helpers for the report: rates, percentiles, the machine, a URL without its password."""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit


@dataclass(frozen=True, slots=True)
class Throughput:
    tasks: int
    seconds: float
    complete: bool  # False when the phase hit its timeout first

    @property
    def per_second(self) -> float | None:
        return rate(self.tasks, self.seconds)

    def to_dict(self, **extra: Any) -> dict[str, Any]:
        return {"tasks": self.tasks, "seconds": round(self.seconds, 6), "per_second": _round(self.per_second),
                "complete": self.complete, **extra}


def rate(count: int, seconds: float) -> float | None:
    return count / seconds if seconds > 0 and count else None


def per_task(seconds: float, tasks: int) -> float | None:
    """Microseconds per task, or None when there were none."""
    return round(seconds / tasks * 1e6, 1) if tasks else None


def percentiles(seconds: Sequence[float]) -> dict[str, float | None]:
    """p50/p95/p99/max/mean in milliseconds (linear interpolation between ranks, like numpy's default)."""
    values = sorted(seconds)
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None, "mean": None}
    return {"p50": _ms(_quantile(values, 0.50)), "p95": _ms(_quantile(values, 0.95)),
            "p99": _ms(_quantile(values, 0.99)), "max": _ms(values[-1]), "mean": _ms(sum(values) / len(values))}


def _quantile(values: Sequence[float], q: float) -> float:
    position = (len(values) - 1) * q
    low = int(position)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (position - low)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def machine() -> dict[str, Any]:
    # The load average (here, before the run; the runner adds the one after) tells a reader whether
    # something else was using the cores during the run.
    return {"cpu_model": _cpu_model(), "cores": os.cpu_count() or 0, "load_average": load_average(),
            "python": platform.python_version(),
            "implementation": platform.python_implementation(), "system": f"{platform.system()} {platform.release()}"}


def load_average() -> float:
    """The 1-minute load average."""
    return round(os.getloadavg()[0], 2)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def redact(url: str) -> str:
    """The URL with any password replaced by ***, so a report can be shared."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))

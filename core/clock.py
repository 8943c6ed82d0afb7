"""Clocks, and the one rule for the times a backend stores.

Every time that decides behaviour (when a task is due, when a lease expires, when a result is old
enough to purge, when a schedule fires) is read from one clock: the backend's (Redis: TIME; SQLite
and memory: the host's; AWS: the calling process's, see the README). API processes and workers
never send an absolute time they read from their own clocks: they send durations (a submit's
delay, a retry's backoff, a lease's length), and the backend adds its own "now" to them.
"""

from __future__ import annotations

import time
from dataclasses import replace

from hexq.core.model import TERMINAL, WAITING, Task, TaskStatus


class SystemClock:
    def now(self) -> float:
        return time.time()


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds


def stamped(task: Task, now: float, *, new: bool = False) -> Task:
    """`task` as a backend stores it when its clock reads `now`.

    - A waiting task (queued or scheduled) is due at max(run_at, now + delay).
    - A new one is scheduled if that is later than now, else queued, and was created now.
    - A finished one (succeeded, dead, cancelled) finished now.

    Backends whose writes run in Lua (Redis) apply the same rule in the script; this function is the
    reference, and what their clients use to rebuild the stored task from the script's `now`.
    """
    changes: dict[str, object] = {"created_at": now} if new else {}
    if task.status in WAITING:
        run_at = max(task.run_at, now + task.delay)
        changes |= {"run_at": run_at, "finished_at": None}
        if new:
            changes["status"] = TaskStatus.SCHEDULED if run_at > now else TaskStatus.QUEUED
    elif task.status in TERMINAL:
        changes["finished_at"] = now
    return replace(task, **changes) if changes else task  # type: ignore[arg-type]

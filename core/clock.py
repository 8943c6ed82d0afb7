"""Clocks, and the one rule for the times a backend stores.

Every time that decides behaviour (when a task is due, when a lease expires, when a result is old
enough to purge, when a schedule fires) is read from one clock: the backend's (Redis: TIME; SQLite
and memory: the host's; AWS: the calling process's, see the README). API processes and workers
never send an absolute time they read from their own clocks: they send durations (a submit's
delay, a retry's backoff, a lease's length), and the backend adds its own "now" to them.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
import time

from hexq.core.model import TERMINAL, WAITING, Task, TaskStatus, replaced


class SystemClock:
    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class FakeClock:
    """A clock that only moves when told to. Its sleepers wake when advance() moves it past their time,
    so a component that sleeps on this clock (the worker's heartbeat, its timeouts) runs in tests without
    real waits. monotonic() is now(): one fake timeline."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()  # advance() may come from another thread than the sleepers' loop
        self._order = itertools.count()
        self._sleepers: list[tuple[float, int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        """Return once the clock has been advanced by `seconds` (at once, after one yield, if <= 0)."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        loop = asyncio.get_running_loop()
        woken: asyncio.Future[None] = loop.create_future()
        with self._lock:
            heapq.heappush(self._sleepers, (self._now + seconds, next(self._order), loop, woken))
        await woken  # a cancelled sleep leaves its entry behind; advance() skips it

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds
            due = []
            while self._sleepers and self._sleepers[0][0] <= self._now:
                due.append(heapq.heappop(self._sleepers))
        for _, _, loop, woken in due:
            if not loop.is_closed():
                loop.call_soon_threadsafe(_wake, woken)


def _wake(woken: asyncio.Future[None]) -> None:
    if not woken.done():
        woken.set_result(None)


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
    return replaced(task, **changes) if changes else task

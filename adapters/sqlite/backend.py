"""The SQLite backend: hexq's embedded default, safe across threads and processes on one machine.

Every operation is a blocking function in `operations` run off the event loop with
asyncio.to_thread, on this object's one connection under a lock. Several processes (and several
backend objects) coordinate through SQLite itself: WAL mode, a busy timeout, and BEGIN IMMEDIATE
around every read-modify-write.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Sequence
from typing import Concatenate, ParamSpec, TypeVar

from hexq.adapters.sqlite import operations as ops
from hexq.adapters.sqlite.schema import connect
from hexq.core.clock import SystemClock
from hexq.core.errors import BackendUnavailable
from hexq.core.model import Lease, Page, Settlement, Stats, Task, TaskQuery, TaskStatus
from hexq.core.ports import Clock
from hexq.core.schedule import Schedule

P = ParamSpec("P")
T = TypeVar("T")

_POLL_FIRST = 0.005
_POLL_MAX = 0.05


class SQLiteBackend:
    """A Backend over one SQLite file.

    Parameters:
        path: the database file; created with its schema on first use.
        clock: the time source for leases and due times (tests pass a FakeClock).
        busy_timeout: seconds a write waits for another connection's lock before failing.

    Raises BackendUnavailable when SQLite reports an operational error (locked, I/O, cannot open).
    """

    name = "sqlite"

    def __init__(self, path: str, clock: Clock | None = None, *, busy_timeout: float = 5.0) -> None:
        self._path = path
        self._clock = clock or SystemClock()
        self._busy_timeout = busy_timeout
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._wakeups = _Wakeups()

    # -- Broker -----------------------------------------------------------------------------
    async def enqueue(self, tasks: Sequence[Task], *, cap: int = 0) -> list[Task]:
        stored = await self._run(ops.enqueue, self._clock, tasks, cap)
        self._wakeups.wake_all()
        return stored

    async def claim(self, queues: Sequence[str], n: int, *, lease_seconds: float, worker_id: str,
                    wait: float = 0.0) -> list[Lease]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        interval = _POLL_FIRST
        while True:
            wakeup = self._wakeups.register(loop)  # before the claim, so an enqueue right after is not missed
            try:
                leases = await self._run(ops.claim, self._clock, queues, n, lease_seconds, worker_id)
                remaining = deadline - loop.time()
                if leases or remaining <= 0:
                    return leases
                # SQLite cannot tell another process that a task arrived, so an idle claimer polls, backing
                # off from 5 ms to 50 ms. Enqueues and settlements in this process wake it at once.
                await asyncio.wait([wakeup], timeout=min(interval, remaining))
            finally:
                self._wakeups.discard(wakeup)
            interval = min(interval * 2, _POLL_MAX)

    async def extend(self, leases: Sequence[Lease], lease_seconds: float) -> list[Lease | None]:
        return await self._run(ops.extend, self._clock, leases, lease_seconds)

    async def settle(self, settlements: Sequence[Settlement]) -> list[bool]:
        applied = await self._run(ops.settle, self._clock, settlements)
        self._wakeups.wake_all()
        return applied

    # -- Sweeper ----------------------------------------------------------------------------
    async def promote_due(self, limit: int) -> int:
        moved = await self._run(ops.promote_due, self._clock, limit)
        self._wakeups.wake_all()
        return moved

    async def reclaim_expired(self, limit: int, lease_seconds: float) -> list[Lease]:
        return await self._run(ops.reclaim_expired, self._clock, limit, lease_seconds)

    async def purge_finished(self, older_than: float, limit: int) -> int:
        return await self._run(ops.purge_finished, self._clock, older_than, limit)

    # -- TaskStore --------------------------------------------------------------------------
    async def get(self, task_id: str) -> Task | None:
        return await self._run(ops.get, task_id)

    async def query(self, query: TaskQuery) -> Page:
        return await self._run(ops.query, query)

    async def request_cancel(self, task_id: str) -> Task | None:
        return await self._run(ops.request_cancel, task_id)

    async def transition(self, task: Task, expected: TaskStatus) -> Task | None:
        changed = await self._run(ops.transition, self._clock, task, expected)
        self._wakeups.wake_all()
        return changed

    async def backlog(self) -> int:
        return await self._run(ops.backlog)

    async def stats(self) -> Stats:
        return await self._run(ops.stats)

    # -- ScheduleStore ----------------------------------------------------------------------
    async def now(self) -> float:
        return self._clock.now()  # the host's: every process on one SQLite file shares its clock

    async def put_schedule(self, schedule: Schedule) -> None:
        await self._run(ops.put_schedule, schedule)

    async def get_schedule(self, name: str) -> Schedule | None:
        return await self._run(ops.get_schedule, name)

    async def delete_schedule(self, name: str) -> bool:
        return await self._run(ops.delete_schedule, name)

    async def schedules(self) -> list[Schedule]:
        return await self._run(ops.schedules)

    async def advance_schedule(self, name: str, expected_next: float, next_run: float) -> bool:
        return await self._run(ops.advance_schedule, name, expected_next, next_run)

    # -- RateLimiter ------------------------------------------------------------------------
    async def acquire(self, key: str, rate: float, burst: int) -> float:
        return await self._run(ops.acquire, self._clock, key, rate, burst)

    async def count_waiting(self, tenant: str) -> int:
        return await self._run(ops.count_waiting, tenant)

    # -- lifecycle --------------------------------------------------------------------------
    async def ping(self) -> None:
        await self._run(ops.ping)

    async def close(self) -> None:
        """Close the connection; a later call opens a new one."""
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    async def _run(self, op: Callable[Concatenate[sqlite3.Connection, P], T], *args: P.args,
                   **kwargs: P.kwargs) -> T:
        return await asyncio.to_thread(self._call, lambda conn: op(conn, *args, **kwargs))

    def _call(self, op: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            try:
                if self._conn is None:
                    self._conn = connect(self._path, self._busy_timeout)
                return op(self._conn)
            except sqlite3.OperationalError as exc:  # locked past busy_timeout, I/O error, cannot open
                raise BackendUnavailable(self.name, str(exc)) from exc


class _Wakeups:
    """Claimers in this process that found nothing and wait; resolved early when work may have arrived."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def register(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        waiter: asyncio.Future[None] = loop.create_future()
        with self._lock:
            self._waiters.append((loop, waiter))
        return waiter

    def discard(self, waiter: asyncio.Future[None]) -> None:
        with self._lock:
            self._waiters = [(loop, w) for loop, w in self._waiters if w is not waiter]

    def wake_all(self) -> None:
        with self._lock:
            waiters, self._waiters = self._waiters, []
        for loop, waiter in waiters:
            if not loop.is_closed():
                loop.call_soon_threadsafe(_resolve, waiter)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)

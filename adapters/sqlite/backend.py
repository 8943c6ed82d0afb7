"""The SQLite backend: hexq's embedded default, safe across threads and processes on one machine.

Every operation is a blocking function (broker.py, operations.py) of this object's one connection, run by
connection.Database: writes and short reads on the caller's event loop, reads of unbounded size on the
backend's own thread. Several processes (and several backend objects) coordinate through SQLite itself: WAL
mode, and BEGIN IMMEDIATE around every read-modify-write. Concurrent enqueues of one event-loop turn share
one transaction (batching.py).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence

from hexq.adapters.sqlite import breakers, broker
from hexq.adapters.sqlite import operations as ops
from hexq.adapters.sqlite.batching import EnqueueBatcher
from hexq.adapters.sqlite.connection import INLINE, THREAD, Database
from hexq.core.breaker import BreakerState
from hexq.core.clock import SystemClock
from hexq.core.model import Lease, Page, Settlement, Stats, Task, TaskQuery, TaskStatus, WorkerInfo
from hexq.core.ports import Clock
from hexq.core.schedule import Schedule

# SQLite cannot tell another process that a task arrived, so an idle claimer looks for another connection's
# commit: PRAGMA data_version, which takes no lock and does no I/O. Every 1 ms for its first 50 ms of waiting
# (a steady trickle of tasks is met within about a millisecond), then the pause grows by half to 20 ms. It
# claims only when the version moved; this process's own writes wake it at once.
_POLL_FIRST = 0.001
_POLL_FAST_FOR = 0.05
_POLL_MAX = 0.02
_SWEEP_CHUNK = 200  # rows a promotion or purge changes per transaction (about a millisecond)
_INLINE_ROWS = 16  # a listing of more tasks than this is read on the connection thread (see connection.py)


class SQLiteBackend:
    """A Backend over one SQLite file.

    Parameters:
        path: the database file; created with its schema on first use.
        clock: the time source for leases and due times (tests pass a FakeClock).
        busy_timeout: seconds a write waits for another connection's lock before failing.
        weights: fair-queue weights of the tenants this process submits for (hexq.core.fairness); others 1.

    Raises BackendUnavailable when SQLite reports an operational error (locked, I/O, cannot open).
    """

    name = "sqlite"

    def __init__(self, path: str, clock: Clock | None = None, *, busy_timeout: float = 5.0,
                 weights: Mapping[str, int] | None = None) -> None:
        self._clock = clock or SystemClock()
        self._weights = dict(weights or {})
        self._db = Database(path, busy_timeout, self.name)
        self._batcher = EnqueueBatcher(self._store)
        self._wakeups = _Wakeups()

    # -- Broker -----------------------------------------------------------------------------
    async def enqueue(self, tasks: Sequence[Task], *, cap: int = 0) -> list[Task]:
        stored = await self._batcher.enqueue(tasks, cap)
        self._wakeups.wake_all()
        return stored

    def _store(self, requests: list[broker.Request]) -> asyncio.Future[list[broker.Outcome]]:
        return self._db.start(INLINE, broker.enqueue, self._clock, requests, self._weights)

    async def claim(self, queues: Sequence[str], n: int, *, lease_seconds: float, worker_id: str,
                    wait: float = 0.0) -> list[Lease]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + wait
        while True:
            wakeup = self._wakeups.register(loop)  # before the claim, so an enqueue right after is not missed
            try:
                seen = await self._db.run(INLINE, broker.data_version)  # before the claim, likewise
                leases = await self._claim(queues, n, lease_seconds, worker_id)
                if leases or loop.time() >= deadline:
                    return leases
                await self._news(loop, wakeup, seen, started, deadline)
            finally:
                self._wakeups.discard(wakeup)

    async def _claim(self, queues: Sequence[str], n: int, lease_seconds: float, worker_id: str) -> list[Lease]:
        # Look first, without the write lock: an idle claimer must not hold up the processes that have work.
        if n <= 0 or not await self._db.run(INLINE, broker.claimable, self._clock, queues):
            return []
        return await self._db.run(INLINE, broker.claim, self._clock, queues, n, lease_seconds, worker_id)

    async def _news(self, loop: asyncio.AbstractEventLoop, wakeup: asyncio.Future[None], seen: int, started: float,
                    deadline: float) -> None:
        """Until this process writes (wakeup), another connection commits (data_version moves past `seen`) or
        the deadline passes."""
        pause = _POLL_FIRST
        while (remaining := deadline - loop.time()) > 0:
            await asyncio.wait([wakeup], timeout=min(pause, remaining))
            if wakeup.done() or await self._db.run(INLINE, broker.data_version) != seen:
                return
            if loop.time() - started >= _POLL_FAST_FOR:
                pause = min(pause * 1.5, _POLL_MAX)

    async def extend(self, leases: Sequence[Lease], lease_seconds: float) -> list[Lease | None]:
        return await self._db.run(INLINE, broker.extend, self._clock, leases, lease_seconds)

    async def settle(self, settlements: Sequence[Settlement]) -> list[bool]:
        applied = await self._db.run(INLINE, broker.settle, self._clock, [broker.Write.of(s) for s in settlements])
        self._wakeups.wake_all()
        return applied

    # -- SettleAndClaim ---------------------------------------------------------------------
    async def settle_and_claim(self, settlements: Sequence[Settlement], queues: Sequence[str], n: int, *,
                               lease_seconds: float, worker_id: str) -> tuple[list[bool], list[Lease]]:
        """settle(settlements), then claim(queues, n) without waiting, in one transaction."""
        if not settlements:
            return [], await self._claim(queues, n, lease_seconds, worker_id)
        writes = [broker.Write.of(settlement) for settlement in settlements]  # once, however often the lock is busy
        applied, leases = await self._db.run(INLINE, broker.settle_and_claim, self._clock, writes, queues, max(n, 0),
                                             lease_seconds, worker_id)
        self._wakeups.wake_all()
        return applied, leases

    # -- Sweeper ----------------------------------------------------------------------------
    async def promote_due(self, limit: int) -> int:
        moved = await self._in_chunks(limit, lambda n: self._db.run(INLINE, ops.promote_due, self._clock, n))
        if moved:
            self._wakeups.wake_all()
        return moved

    async def reclaim_expired(self, limit: int, lease_seconds: float) -> list[Lease]:
        return await self._db.run(INLINE, ops.reclaim_expired, self._clock, limit, lease_seconds)

    async def purge_finished(self, older_than: float, limit: int) -> int:
        return await self._in_chunks(limit, lambda n: self._db.run(INLINE, ops.purge_finished, self._clock,
                                                                   older_than, n))

    @staticmethod
    async def _in_chunks(limit: int, sweep: Callable[[int], Awaitable[int]]) -> int:
        """A sweep of up to `limit` rows as several short transactions, the loop free between them: they run on
        the event loop, which in `hexq serve` is also the API's."""
        done = 0
        while done < limit:
            size = min(limit - done, _SWEEP_CHUNK)
            moved = await sweep(size)
            done += moved
            if moved < size:
                break
            await asyncio.sleep(0)
        return done

    # -- TaskStore --------------------------------------------------------------------------
    async def get(self, task_id: str) -> Task | None:
        return await self._db.run(INLINE, ops.get, task_id)

    async def query(self, query: TaskQuery) -> Page:
        return await self._db.run(query.limit <= _INLINE_ROWS and not query.search, ops.query, query)

    async def request_cancel(self, task_id: str) -> Task | None:
        return await self._db.run(INLINE, ops.request_cancel, task_id)

    async def transition(self, task: Task, expected: TaskStatus) -> Task | None:
        changed = await self._db.run(INLINE, ops.transition, self._clock, task, expected)
        self._wakeups.wake_all()
        return changed

    async def backlog(self) -> int:
        return await self._db.run(THREAD, ops.backlog)

    async def stats(self) -> Stats:
        return await self._db.run(THREAD, ops.stats, self._clock)

    # -- WorkerRegistry ---------------------------------------------------------------------
    async def beat(self, worker: WorkerInfo, ttl: float) -> None:
        await self._db.run(INLINE, ops.beat, self._clock, worker, ttl)

    async def leave(self, worker_id: str) -> None:
        await self._db.run(INLINE, ops.leave, worker_id)

    async def workers(self) -> list[WorkerInfo]:
        return await self._db.run(THREAD, ops.workers, self._clock)

    # -- LeaseReader ------------------------------------------------------------------------
    async def lease(self, task_id: str) -> Lease | None:
        return await self._db.run(INLINE, ops.lease, task_id)

    async def leases(self, limit: int, *, tenant: str | None = None) -> list[Lease]:
        return await self._db.run(THREAD, ops.leases, limit, tenant)

    # -- QueueControl -----------------------------------------------------------------------
    async def pause(self, queue: str) -> bool:
        return await self._db.run(INLINE, ops.pause, queue)

    async def resume(self, queue: str) -> bool:
        resumed = await self._db.run(INLINE, ops.resume, queue)
        if resumed:
            self._wakeups.wake_all()  # other processes see the commit move data_version
        return resumed

    async def paused(self) -> frozenset[str]:
        return await self._db.run(INLINE, ops.paused)

    # -- BreakerStore -----------------------------------------------------------------------
    async def breaker_states(self) -> tuple[float, list[BreakerState]]:
        return await self._db.run(INLINE, breakers.states, self._clock)

    async def put_breaker(self, state: BreakerState) -> BreakerState | None:
        return await self._db.run(INLINE, breakers.put, state)

    # -- ScheduleStore ----------------------------------------------------------------------
    async def now(self) -> float:
        return self._clock.now()  # the host's: every process on one SQLite file shares its clock

    async def put_schedule(self, schedule: Schedule) -> None:
        await self._db.run(INLINE, ops.put_schedule, schedule)

    async def get_schedule(self, name: str) -> Schedule | None:
        return await self._db.run(INLINE, ops.get_schedule, name)

    async def delete_schedule(self, name: str) -> bool:
        return await self._db.run(INLINE, ops.delete_schedule, name)

    async def schedules(self) -> list[Schedule]:
        return await self._db.run(THREAD, ops.schedules)

    async def advance_schedule(self, name: str, expected_next: float, next_run: float) -> bool:
        return await self._db.run(INLINE, ops.advance_schedule, name, expected_next, next_run)

    # -- RateLimiter ------------------------------------------------------------------------
    async def acquire(self, key: str, rate: float, burst: int) -> float:
        return await self._db.run(INLINE, ops.acquire, self._clock, key, rate, burst)

    async def count_waiting(self, tenant: str) -> int:
        return await self._db.run(THREAD, ops.count_waiting, tenant)

    # -- lifecycle --------------------------------------------------------------------------
    async def ping(self) -> None:
        await self._db.run(INLINE, ops.ping)

    async def close(self) -> None:
        """Close the connection; a later call opens a new one."""
        await self._db.close()


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
            if not self._waiters:
                return
            waiters, self._waiters = self._waiters, []
        here = _running_loop()
        for loop, waiter in waiters:
            if loop is here:
                _resolve(waiter)  # no need to write to the loop's self-pipe
            elif not loop.is_closed():
                loop.call_soon_threadsafe(_resolve, waiter)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)

"""In-process backend with the real semantics (leases, fencing, delays, DLQ, idempotency).

The backend for unit tests and single-process demos. It is safe to call from several threads
and event loops at once (Starlette's TestClient runs the app on its own loop), so state sits
behind a lock and waiting claimers are woken with call_soon_threadsafe.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
from collections.abc import Mapping, Sequence
from dataclasses import replace

from hexq.core import idempotency, quota, search
from hexq.core.breaker import BreakerState
from hexq.core.clock import SystemClock, stamped
from hexq.core.fairness import next_turn, step_of
from hexq.core.model import (
    STATES,
    WAITING,
    Lease,
    Page,
    Priority,
    Settlement,
    Stats,
    Task,
    TaskQuery,
    TaskStatus,
    WorkerInfo,
)
from hexq.core.ports import Clock
from hexq.core.ratelimit import Bucket, take
from hexq.core.roster import Roster
from hexq.core.schedule import Schedule

_FINISHED = (TaskStatus.SUCCEEDED, TaskStatus.CANCELLED)
_COUNTED = frozenset(TaskStatus(state) for state in STATES)  # what Stats.depth counts


class MemoryBackend:
    name = "memory"

    def __init__(self, clock: Clock | None = None, *, weights: Mapping[str, int] | None = None) -> None:
        self._clock = clock or SystemClock()
        self._weights = dict(weights or {})
        self._lock = threading.Lock()
        self._seq = itertools.count(1)
        self._tokens = itertools.count(1)
        self._tasks: dict[str, Task] = {}
        self._order: dict[str, int] = {}
        self._ready: dict[str, list[tuple[int, float, int, str]]] = {}  # (-priority, turn, seq, id)
        # Fair queues (hexq.core.fairness): each task's turn once it has been queued, the step of a weighted
        # tenant's task, and per (queue, priority) the level's clock and each tenant's last turn.
        self._turns: dict[str, float] = {}
        self._steps: dict[str, float] = {}
        self._clocks: dict[tuple[str, int], float] = {}
        self._lasts: dict[tuple[str, int, str], float] = {}
        self._delayed: list[tuple[float, int, str]] = []
        self._leases: dict[str, Lease] = {}
        self._cancels: set[str] = set()  # running tasks whose cancellation was requested
        self._keys: dict[tuple[str, str], str] = {}
        self._schedules: dict[str, Schedule] = {}
        self._buckets: dict[str, Bucket] = {}
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._roster = Roster(self._clock)
        self._paused: set[str] = set()
        self._breakers: dict[str, BreakerState] = {}

    # -- Broker -----------------------------------------------------------------------------
    async def enqueue(self, tasks: Sequence[Task], *, cap: int = 0) -> list[Task]:
        with self._lock:
            idempotency.check(tasks, self._earlier)
            if cap:
                quota.check(tasks, cap, self._known, self._waiting)
            now = self._clock.now()
            stored = [self._add(task, now) for task in tasks]
            self._wake()
        return stored

    async def claim(self, queues: Sequence[str], n: int, *, lease_seconds: float, worker_id: str,
                    wait: float = 0.0) -> list[Lease]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            waiter: asyncio.Future[None] = loop.create_future()
            with self._lock:
                self._promote(None)
                leases = self._claim(queues, n, lease_seconds, worker_id)
                remaining = deadline - loop.time()
                if leases or remaining <= 0:
                    return leases
                # Registered under the lock, so an enqueue right after cannot be missed.
                self._waiters.append((loop, waiter))
            try:
                await asyncio.wait_for(waiter, timeout=remaining)
            except TimeoutError:
                pass
            finally:
                with self._lock:
                    if (loop, waiter) in self._waiters:
                        self._waiters.remove((loop, waiter))

    async def extend(self, leases: Sequence[Lease], lease_seconds: float) -> list[Lease | None]:
        with self._lock:
            return [self._extend(lease, lease_seconds) for lease in leases]

    async def settle(self, settlements: Sequence[Settlement]) -> list[bool]:
        with self._lock:
            applied = [self._settle(s) for s in settlements]
            self._wake()
        return applied

    # -- SettleAndClaim ---------------------------------------------------------------------
    async def settle_and_claim(self, settlements: Sequence[Settlement], queues: Sequence[str], n: int, *,
                               lease_seconds: float, worker_id: str) -> tuple[list[bool], list[Lease]]:
        """settle, then claim without waiting, under one lock: the reference the other backends follow."""
        with self._lock:
            applied = [self._settle(s) for s in settlements]
            self._promote(None)
            leases = self._claim(queues, n, lease_seconds, worker_id)
            self._wake()
        return applied, leases

    # -- Sweeper ----------------------------------------------------------------------------
    async def promote_due(self, limit: int) -> int:
        with self._lock:
            moved = self._promote(limit)
            self._wake()
        return moved

    async def reclaim_expired(self, limit: int, lease_seconds: float) -> list[Lease]:
        now = self._clock.now()
        with self._lock:
            expired = [lease for lease in self._leases.values() if lease.expires_at <= now][:limit]
            fresh = [Lease(lease.task, next(self._tokens), now + lease_seconds, lease.task.id in self._cancels)
                     for lease in expired]
            for lease in fresh:
                self._leases[lease.task.id] = lease
        return fresh

    async def purge_finished(self, older_than: float, limit: int) -> int:
        cutoff = self._clock.now() - older_than
        with self._lock:
            old = [t for t in self._tasks.values()
                   if t.status in _FINISHED and t.finished_at is not None and t.finished_at < cutoff][:limit]
            for task in old:
                self._forget(task)
        return len(old)

    # -- TaskStore --------------------------------------------------------------------------
    async def get(self, task_id: str) -> Task | None:
        with self._lock:
            return self._tasks.get(task_id)

    async def query(self, query: TaskQuery) -> Page:
        before = _cursor(query.cursor)
        with self._lock:
            # Only a search counts against max_scan: a plain listing here costs what its filters cost.
            bounded = query if query.search else replace(query, max_scan=len(self._tasks) + 1)
            newest = sorted(self._tasks.values(), key=lambda t: -self._order[t.id])
            ordered = ((str(self._order[t.id]), t) for t in newest if before is None or self._order[t.id] < before)
            return search.scan(ordered, bounded, lambda task: _matches(task, query))

    async def request_cancel(self, task_id: str) -> Task | None:
        with self._lock:
            current = self._tasks.get(task_id)
            if current is None or current.status is not TaskStatus.RUNNING:
                return None
            self._cancels.add(task_id)
            return current

    async def transition(self, task: Task, expected: TaskStatus) -> Task | None:
        with self._lock:
            current = self._tasks.get(task.id)
            if current is None or current.status != expected:
                return None
            self._leases.pop(task.id, None)
            self._cancels.discard(task.id)
            task = stamped(task, self._clock.now())
            self._store(task)
            self._wake()
        return task

    async def backlog(self) -> int:
        with self._lock:
            return sum(1 for task in self._tasks.values()
                       if task.status is TaskStatus.QUEUED and task.queue not in self._paused)

    async def stats(self) -> Stats:
        with self._lock:
            now = self._clock.now()
            by_status = {status: 0 for status in TaskStatus}
            queued: dict[str, dict[Priority, int]] = {}
            depth: dict[tuple[str, Priority, str], int] = {}
            eligible: dict[tuple[str, Priority], float] = {}
            for task in self._tasks.values():
                by_status[task.status] += 1
                if task.status in _COUNTED:
                    place = (task.queue, task.priority, task.status.value)
                    depth[place] = depth.get(place, 0) + 1
                if task.status is TaskStatus.QUEUED:
                    levels = queued.get(task.queue)
                    if levels is None:  # a dict per queue, not per task: the poller calls this every tick
                        levels = queued[task.queue] = {p: 0 for p in Priority}
                    levels[task.priority] += 1
                    since, level = max(task.created_at, task.run_at), (task.queue, task.priority)
                    eligible[level] = min(eligible.get(level, since), since)
            paused = frozenset(self._paused)
        return Stats(by_status, queued, depth, {place: now - since for place, since in eligible.items()}, paused)

    # -- ScheduleStore ----------------------------------------------------------------------
    async def now(self) -> float:
        return self._clock.now()

    # -- BreakerStore -----------------------------------------------------------------------
    async def breaker_states(self) -> tuple[float, list[BreakerState]]:
        with self._lock:
            return self._clock.now(), sorted(self._breakers.values(), key=lambda b: b.name)

    async def put_breaker(self, state: BreakerState) -> BreakerState | None:
        with self._lock:
            stored = self._breakers.get(state.name)
            if (stored.version if stored is not None else 0) != state.version:
                return None
            new = self._breakers[state.name] = replace(state, version=state.version + 1)
            return new

    async def put_schedule(self, schedule: Schedule) -> None:
        with self._lock:
            self._schedules[schedule.name] = schedule

    async def get_schedule(self, name: str) -> Schedule | None:
        with self._lock:
            return self._schedules.get(name)

    async def delete_schedule(self, name: str) -> bool:
        with self._lock:
            return self._schedules.pop(name, None) is not None

    async def schedules(self) -> list[Schedule]:
        with self._lock:
            return sorted(self._schedules.values(), key=lambda s: s.name)

    async def advance_schedule(self, name: str, expected_next: float, next_run: float) -> bool:
        with self._lock:
            current = self._schedules.get(name)
            if current is None or current.next_run != expected_next:
                return False
            self._schedules[name] = replace(current, next_run=next_run, last_run=expected_next)
        return True

    # -- RateLimiter ------------------------------------------------------------------------
    async def acquire(self, key: str, rate: float, burst: int) -> float:
        with self._lock:
            bucket, wait = take(self._buckets.get(key), self._clock.now(), rate, burst)
            self._buckets[key] = bucket
        return wait

    async def count_waiting(self, tenant: str) -> int:
        with self._lock:
            return self._waiting(tenant)

    # -- WorkerRegistry ---------------------------------------------------------------------
    async def beat(self, worker: WorkerInfo, ttl: float) -> None:
        with self._lock:
            self._roster.beat(worker, ttl)

    async def leave(self, worker_id: str) -> None:
        with self._lock:
            self._roster.leave(worker_id)

    async def workers(self) -> list[WorkerInfo]:
        with self._lock:
            return self._roster.workers()

    # -- LeaseReader ------------------------------------------------------------------------
    async def lease(self, task_id: str) -> Lease | None:
        with self._lock:
            held = self._leases.get(task_id)
            return None if held is None else self._current(held)

    async def leases(self, limit: int, *, tenant: str | None = None) -> list[Lease]:
        with self._lock:
            held = sorted(self._leases.values(), key=lambda lease: (lease.expires_at, self._order[lease.task.id]))
            mine = [self._current(lease) for lease in held if tenant is None or lease.task.tenant == tenant]
            return mine[:max(limit, 0)]

    def _current(self, lease: Lease) -> Lease:
        """The lease with the task as stored now and the cancel mark (the held copy keeps the task as claimed)."""
        return replace(lease, task=self._tasks[lease.task.id], cancel_requested=lease.task.id in self._cancels)

    # -- QueueControl -----------------------------------------------------------------------
    async def pause(self, queue: str) -> bool:
        with self._lock:
            changed = queue not in self._paused
            self._paused.add(queue)
        return changed

    async def resume(self, queue: str) -> bool:
        with self._lock:
            changed = queue in self._paused
            self._paused.discard(queue)
            if changed:
                self._wake()
        return changed

    async def paused(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._paused)

    # -- lifecycle --------------------------------------------------------------------------
    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None

    # -- internals (callers hold the lock) --------------------------------------------------
    def _waiting(self, tenant: str) -> int:
        return sum(1 for task in self._tasks.values() if task.tenant == tenant and task.status in WAITING)

    def _earlier(self, task: Task) -> Task | None:
        task_id = self._keys.get((task.tenant, task.idempotency_key)) if task.idempotency_key else None
        return None if task_id is None else self._tasks.get(task_id)

    def _known(self, task: Task) -> bool:
        return task.id in self._tasks or self._earlier(task) is not None

    def _add(self, task: Task, now: float) -> Task:
        key = (task.tenant, task.idempotency_key) if task.idempotency_key else None
        if key and key in self._keys and self._keys[key] in self._tasks:
            return self._tasks[self._keys[key]]
        if key:
            self._keys[key] = task.id
        self._order[task.id] = next(self._seq)
        step = step_of(self._weights, task.tenant)
        if step != 1.0:
            self._steps[task.id] = step
        task = stamped(task, now, new=True)
        self._store(task)
        return task

    def _store(self, task: Task) -> None:
        """Save a task and index it by its status (indexes are lazy: stale entries are skipped)."""
        self._tasks[task.id] = task
        seq = self._order[task.id]
        if task.status is TaskStatus.QUEUED:
            heapq.heappush(self._ready.setdefault(task.queue, []), (-task.priority, self._turn(task), seq, task.id))
        elif task.status is TaskStatus.SCHEDULED:
            heapq.heappush(self._delayed, (task.run_at, seq, task.id))

    def _forget(self, task: Task) -> None:
        del self._tasks[task.id]
        del self._order[task.id]
        self._turns.pop(task.id, None)
        self._steps.pop(task.id, None)
        if task.idempotency_key:
            self._keys.pop((task.tenant, task.idempotency_key), None)

    def _turn(self, task: Task) -> float:
        """The task's turn: the one it had, or a new one (hexq.core.fairness) the first time it is queued."""
        turn = self._turns.get(task.id)
        if turn is None:
            level, tenant = (task.queue, int(task.priority)), (task.queue, int(task.priority), task.tenant)
            turn = next_turn(self._clocks.get(level), self._lasts.get(tenant), self._steps.get(task.id, 1.0),
                             self._order[task.id])
            self._clocks.setdefault(level, turn)
            self._turns[task.id] = self._lasts[tenant] = turn
        return turn

    def _claim(self, queues: Sequence[str], n: int, lease_seconds: float, worker_id: str) -> list[Lease]:
        now = self._clock.now()
        leases: list[Lease] = []
        while len(leases) < n:
            task = self._pop_ready(queues)
            if task is None:
                break
            running = task.moved_to(TaskStatus.RUNNING, attempts=task.attempts + 1, started_at=now,
                                    worker_id=worker_id)
            self._tasks[task.id] = running
            lease = Lease(running, next(self._tokens), now + lease_seconds)
            self._leases[task.id] = lease
            leases.append(lease)
        return leases

    def _pop_ready(self, queues: Sequence[str]) -> Task | None:
        """The highest priority queued task across `queues` with the lowest turn (then seq: ties between tenants)."""
        best: tuple[int, float, int, str] | None = None
        best_queue = ""
        for queue in queues:
            if queue in self._paused:
                continue
            heap = self._ready.get(queue, [])
            while heap and not self._is_ready(heap[0][3], heap[0][2]):
                heapq.heappop(heap)
            if heap and (best is None or heap[0] < best):
                best, best_queue = heap[0], queue
        if best is None:
            return None
        heapq.heappop(self._ready[best_queue])
        level = (best_queue, -best[0])
        self._clocks[level] = max(self._clocks.get(level, best[1]), best[1])  # the level's clock: highest claimed
        return self._tasks[best[3]]

    def _is_ready(self, task_id: str, seq: int) -> bool:
        task = self._tasks.get(task_id)
        return task is not None and task.status is TaskStatus.QUEUED and self._order[task_id] == seq

    def _promote(self, limit: int | None) -> int:
        now = self._clock.now()
        moved = 0
        while self._delayed and self._delayed[0][0] <= now and (limit is None or moved < limit):
            run_at, _, task_id = heapq.heappop(self._delayed)
            task = self._tasks.get(task_id)
            if task is not None and task.status is TaskStatus.SCHEDULED and task.run_at == run_at:
                self._store(task.moved_to(TaskStatus.QUEUED))
                moved += 1
        return moved

    def _extend(self, lease: Lease, lease_seconds: float) -> Lease | None:
        current = self._leases.get(lease.task.id)
        if current is None or current.token != lease.token:
            return None
        renewed = replace(current, expires_at=self._clock.now() + lease_seconds,
                          cancel_requested=lease.task.id in self._cancels)
        self._leases[lease.task.id] = renewed
        return renewed

    def _settle(self, settlement: Settlement) -> bool:
        task_id = settlement.task.id
        current = self._leases.get(task_id)
        if current is None or current.token != settlement.lease.token:
            return False
        del self._leases[task_id]
        self._cancels.discard(task_id)
        self._store(stamped(settlement.task, self._clock.now()))
        return True

    def _wake(self) -> None:
        for loop, waiter in self._waiters:
            loop.call_soon_threadsafe(_resolve, waiter)
        self._waiters.clear()


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _cursor(cursor: str | None) -> int | None:
    """The seq a page continues below. Cursors come from clients: anything else starts from the newest
    (str.isdigit alone accepts "²", and int() refuses more than 4300 digits)."""
    if cursor and cursor.isascii() and cursor.isdigit() and len(cursor) <= 18:
        return int(cursor)
    return None


def _matches(task: Task, query: TaskQuery) -> bool:
    return ((query.status is None or task.status is query.status)
            and (query.type is None or task.type == query.type)
            and (query.queue is None or task.queue == query.queue)
            and (query.tenant is None or task.tenant == query.tenant) and search.in_window(task, query))

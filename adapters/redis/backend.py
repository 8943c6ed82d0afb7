"""RedisBackend: every Backend operation as one round trip, each multi-key one a Lua script."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, cast

from hexq.adapters.redis import records
from hexq.adapters.redis._lua import Scripts
from hexq.adapters.redis.connection import Client, Target, connect, parse, translated
from hexq.adapters.redis.keys import Keys, check_part, is_part, schedule_fields
from hexq.adapters.redis.merge import ShardPage
from hexq.adapters.redis.submits import Submits
from hexq.core import search
from hexq.core.breaker import BreakerState
from hexq.core.clock import stamped
from hexq.core.errors import ConfigurationError
from hexq.core.model import Lease, Page, Settlement, Stats, Task, TaskQuery, TaskStatus, WorkerInfo
from hexq.core.ports import LEASE_SCAN
from hexq.core.ratelimit import check
from hexq.core.schedule import Schedule

PROMOTE_LIMIT = 1000  # due tasks a claim promotes first; the poller's promote_due moves the rest
QUERY_SCAN = 2000  # index entries one query examines at most (see query.lua)
OLDEST_SCAN = 32  # tasks at the head of each ready level whose age stats reads (see stats.lua)
_MIN_BLOCK = 0.01  # BLPOP treats a timeout that rounds to 0 ms as "forever"
_BLOCK_MARGIN = 1.0  # a blocked BLPOP gets this long past its own timeout before it counts as hung
_REPUSH = "redis.call('LPUSH', KEYS[1], '1'); redis.call('EXPIRE', KEYS[1], 60)"


class RedisBackend:
    """A Backend on Redis or Redis Cluster (see the hexq.adapters.redis docstring for the design).

    Parameters:
        target: where to connect (connection.parse of a backend URL).
        test_clock: test mode only. Scripts then read "now" from the partition's test-clock key,
            which tests set and advance, instead of the server's TIME. Never set in production.

    Raises BackendUnavailable when Redis cannot be reached in time, is loading, out of memory,
    failing over or read-only; ValidationError for a queue name or task id that cannot be a key part.
    """

    name = "redis"

    def __init__(self, target: Target, *, test_clock: bool = False, weights: Mapping[str, int] | None = None,
                 shard: str | None = None, connections: Connections | None = None,
                 clock_key: str | None = None) -> None:
        if target.sharding is not None and connections is None:
            # A sharded URL is served by ShardedRedisBackend (sharded.py), whose shards are RedisBackends on one
            # Connections: running the legacy layout under a URL that asks for another would be wrong.
            raise ConfigurationError("HEXQ_BACKEND asks for shards=; open it with hexq.adapters.redis.from_url")
        self._target = target
        self.keys = Keys(target.partition, shard)
        self._conns = connections if connections is not None else Connections(target)
        self._client: Client = self._conns.client
        self._scripts = self._conns.scripts
        self._prefix = [self.keys.prefix]
        self._mode = "1" if test_clock else "0"
        # Test mode of a shard: "now" is the deployment's one test-clock key (another slot), read and passed on.
        self._clock_key = clock_key
        self._submits = Submits(self._send_enqueue, dict(weights or {}))

    @classmethod
    def from_url(cls, url: str, *, test_clock: bool = False, weights: Mapping[str, int] | None = None) -> RedisBackend:
        """redis://, rediss:// or redis+cluster:// (connection.py lists the options). Connects lazily.
        `weights`: fair-queue weights of the tenants this process submits for (hexq.core.fairness)."""
        return cls(parse(url), test_clock=test_clock, weights=weights)

    async def _run(self, script: str, *args: records.Arg) -> Any:
        with translated():
            return await self._scripts.run(script, self._prefix, [await self._clock_mode(), *args])

    async def _send_enqueue(self, args: list[records.Arg]) -> Any:
        return await self._scripts.run("enqueue", self._prefix, [await self._clock_mode(), *args])

    async def _clock_mode(self) -> str:
        if self._clock_key is None:
            return self._mode
        return str(await self._client.get(self._clock_key))  # tests only (see __init__)

    # -- Broker -----------------------------------------------------------------------------
    async def enqueue(self, tasks: Sequence[Task], *, cap: int = 0) -> list[Task]:
        """A cap is checked inside the enqueue script, so concurrent submits cannot overshoot it. Concurrent
        enqueues of this process share one script call (submits.py); each is answered on its own."""
        if not tasks:
            return []
        return await self._submits.enqueue(tasks, cap)

    async def claim(self, queues: Sequence[str], n: int, *, lease_seconds: float, worker_id: str,
                    wait: float = 0.0) -> list[Lease]:
        names = [check_part(queue, "queue") for queue in queues]
        if n <= 0 or not names:
            return []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            leases, next_due_in = await self.claim_once(names, n, lease_seconds=lease_seconds, worker_id=worker_id)
            remaining = deadline - loop.time()
            if leases or remaining <= 0:
                return leases
            # Idle: block on the queues' wake lists until an enqueue (or a promotion, release or
            # replay) pushes a token, or until the earliest scheduled task is due.
            if next_due_in is not None:
                remaining = min(remaining, next_due_in)
            await self.await_wake(names, max(remaining, _MIN_BLOCK))
            _raise_if_cancelled()

    async def claim_once(self, names: Sequence[str], n: int, *, lease_seconds: float,
                         worker_id: str) -> tuple[list[Lease], float | None]:
        """One claim script call (no waiting): the leases, and in how many seconds the earliest scheduled task
        of these queues is due (None: none is). `names` are checked queue names."""
        started, expires, found, next_due_in = await self._run("claim", n, records.number(lease_seconds),
                                                               worker_id, PROMOTE_LIMIT, *names)
        _raise_if_cancelled()
        expires_at = float(expires)
        return ([records.decode_claimed(entry, started, expires_at, worker_id) for entry in found],
                float(next_due_in) if next_due_in else None)

    async def await_wake(self, queues: Sequence[str], seconds: float) -> bool:
        """Block until an enqueue (or a promotion, release or replay) pushes a wake token for one of `queues`,
        or `seconds` pass; True if a token was taken."""
        return await self._blpop([self.keys.wake(queue) for queue in queues], seconds)

    async def _blpop(self, keys: list[str], seconds: float) -> bool:
        """Block on the server until one of `keys` has an element (popped) or `seconds` pass; True if popped."""
        blocking = self._conns.blocking()
        with translated():
            # The client has no socket timeout (BLPOP may block longer), so a hung server is
            # caught here instead.
            async with asyncio.timeout(seconds + self._target.timeout + _BLOCK_MARGIN):
                return await blocking.blpop(keys, timeout=seconds) is not None

    # -- FinishWaiter -----------------------------------------------------------------------
    async def wait_finished(self, task_id: str, seconds: float) -> Task | None:
        """Block on the server (BLPOP) until the task finishes: the settling script pushes to its done list
        while a watch key says someone waits. The watch is set before each read, so a finish between the
        read and the BLPOP still leaves its token in the list."""
        if not is_part(task_id):
            return None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        watch, done = self.keys.watch(task_id), self.keys.done(task_id)
        while True:
            with translated():
                await self._client.set(watch, "1", ex=max(1, math.ceil(deadline - loop.time())) + 5)
            task = await self.get(task_id)
            remaining = deadline - loop.time()
            if task is None or task.is_terminal or remaining <= 0:
                return task
            if await self._blpop([done], max(remaining, _MIN_BLOCK)):
                with translated():  # put the token back for whoever else waits on this task
                    await self._client.eval(_REPUSH, 1, done)

    async def extend(self, leases: Sequence[Lease], lease_seconds: float) -> list[Lease | None]:
        if not leases:
            return []
        expires, renewed = await self._run("extend", records.number(lease_seconds),
                                           *(records.lease_arg(lease) for lease in leases))
        expires_at = float(expires)
        return [None if cancel is None else Lease(lease.task, lease.token, expires_at, cancel == "1")
                for lease, cancel in zip(leases, renewed, strict=True)]

    async def settle(self, settlements: Sequence[Settlement]) -> list[bool]:
        if not settlements:
            return []
        args = [arg for s in settlements for arg in records.settle_args(s.lease.token, s.task)]
        return [bool(applied) for applied in await self._run("settle", *args)]

    # -- SettleAndClaim ---------------------------------------------------------------------
    async def settle_and_claim(self, settlements: Sequence[Settlement], queues: Sequence[str], n: int, *,
                               lease_seconds: float, worker_id: str) -> tuple[list[bool], list[Lease]]:
        """settle(settlements), then claim(queues, n) without waiting, in one script call."""
        names = [check_part(queue, "queue") for queue in queues]
        n = max(n, 0) if names else 0
        if not settlements and not n:
            return [], []
        args = [arg for s in settlements for arg in records.settle_args(s.lease.token, s.task)]
        applied, started, expires, found = await self._run(
            "settle_and_claim", len(settlements), *args, n, records.number(lease_seconds), worker_id, PROMOTE_LIMIT,
            *names)
        _raise_if_cancelled()
        expires_at = float(expires)
        return ([bool(a) for a in applied],
                [records.decode_claimed(entry, started, expires_at, worker_id) for entry in found])

    # -- Sweeper ----------------------------------------------------------------------------
    async def promote_due(self, limit: int) -> int:
        return int(await self._run("promote", max(limit, 0)))

    async def reclaim_expired(self, limit: int, lease_seconds: float) -> list[Lease]:
        expires, found = await self._run("reclaim", max(limit, 0), records.number(lease_seconds))
        return [records.decode_reclaimed(entry, float(expires)) for entry in found]

    async def purge_finished(self, older_than: float, limit: int) -> int:
        return int(await self._run("purge", records.number(older_than), max(limit, 0)))

    # -- TaskStore --------------------------------------------------------------------------
    async def get(self, task_id: str) -> Task | None:
        if not is_part(task_id):  # ids come from URLs; one that cannot be a key names no task
            return None
        with translated():
            record = await self._client.hmget(self.keys.task(task_id), list(records.RECORD_FIELDS))
        return None if record[0] is None else records.decode_task(record)

    async def query(self, query: TaskQuery) -> Page:
        if query.search:
            return await self._search(query, query.search)
        items, cursor, scanned, _ = await self._query(query, max(query.limit, 0), records.parse_cursor(query.cursor),
                                                   QUERY_SCAN)
        return Page([records.decode_task(item) for item in items], cursor or None, int(scanned))

    async def page(self, query: TaskQuery, limit: int, cursor: str, bound: int, *forms: str) -> ShardPage[Task]:
        """One call of query.lua as a shard's part of a sharded listing (sharded.py, merge.py): each item with
        its created_at and seq."""
        items, next_cursor, scanned, seqs = await self._query(query, limit, records.parse_cursor(cursor), bound,
                                                              *forms)
        tasks = [records.decode_task(item) for item in items]
        return ShardPage([(task.created_at, int(seq), task) for task, seq in zip(tasks, seqs, strict=True)],
                         str(next_cursor), int(scanned))

    async def _query(self, query: TaskQuery, limit: int, cursor: str, bound: int, *forms: str) -> Any:
        status = query.status.value if query.status else ""
        window = ("" if at is None else records.number(at) for at in (query.created_after, query.created_before))
        return await self._run("query", status, query.type or "", query.queue or "", query.tenant or "",
                               limit, cursor, bound, "" if query.priority is None else int(query.priority), *window,
                               *forms)

    async def _search(self, query: TaskQuery, text: str) -> Page:
        """A search in calls of at most QUERY_SCAN entries each (each call is one script that holds the server),
        until the page is full or max_scan entries were examined."""
        found: list[Task] = []
        cursor, scanned, forms = records.parse_cursor(query.cursor), 0, search.forms(text)
        while True:
            bound = min(QUERY_SCAN, query.max_scan - scanned)
            items, cursor, examined, _ = await self._query(query, query.limit - len(found), cursor, bound, *forms)
            scanned += int(examined)
            found += [task for task in map(records.decode_task, items) if search.matches(task, text)]
            if not cursor or len(found) >= query.limit or scanned >= query.max_scan:
                return Page(found, cursor or None, scanned)

    async def request_cancel(self, task_id: str) -> Task | None:
        if not is_part(task_id):
            return None
        found = await self._run("request_cancel", task_id)
        return None if found is None else records.decode_task(found)

    async def transition(self, task: Task, expected: TaskStatus) -> Task | None:
        at = await self._run("transition", expected.value, *records.transition_args(task))
        return None if at == 0 else stamped(task, float(at))

    async def backlog(self) -> int:
        return int(await self._run("backlog"))

    async def stats(self) -> Stats:
        statuses = list(TaskStatus)
        counts, queues, running, depth, now, paused = await self._run("stats", OLDEST_SCAN,
                                                                      *(status.value for status in statuses))
        return replace(records.decode_stats(statuses, counts, queues, [*running, *depth], float(now)),
                       paused=frozenset(paused))

    # -- WorkerRegistry ---------------------------------------------------------------------
    async def beat(self, worker: WorkerInfo, ttl: float) -> None:
        await self._run("worker_beat", worker.id, records.number(ttl), int(worker.running),
                        records.worker_value(worker))

    async def leave(self, worker_id: str) -> None:
        await self._run("worker_leave", worker_id)

    async def workers(self) -> list[WorkerInfo]:
        flat = await self._run("workers")
        return sorted((records.decode_worker(worker_id, value) for worker_id, value in zip(flat[::2], flat[1::2],
                                                                                           strict=True)),
                      key=lambda w: w.id)

    # -- LeaseReader ------------------------------------------------------------------------
    async def lease(self, task_id: str) -> Lease | None:
        if not is_part(task_id):
            return None
        found = await self._run("leases", task_id, 1, "", 1)
        return records.decode_lease(found[0]) if found else None

    async def leases(self, limit: int, *, tenant: str | None = None) -> list[Lease]:
        if limit <= 0:
            return []
        scan = max(limit, LEASE_SCAN) if tenant is not None else limit
        return [records.decode_lease(entry) for entry in await self._run("leases", "", limit, tenant or "", scan)]

    # -- QueueControl -----------------------------------------------------------------------
    async def pause(self, queue: str) -> bool:
        return bool(await self._run("queue_pause", check_part(queue, "queue")))

    async def resume(self, queue: str) -> bool:
        return bool(await self._run("queue_resume", check_part(queue, "queue")))

    async def paused(self) -> frozenset[str]:
        with translated():
            return frozenset(cast(set[str], await self._client.smembers(self.keys.paused)))

    # -- BreakerStore -----------------------------------------------------------------------
    async def breaker_states(self) -> tuple[float, list[BreakerState]]:
        now, *flat = await self._run("breakers")
        states = [_breaker(name, value) for name, value in zip(flat[::2], flat[1::2], strict=True)]
        return float(now), sorted(states, key=lambda b: b.name)

    async def put_breaker(self, state: BreakerState) -> BreakerState | None:
        version = int(await self._run("breaker_put", check_part(state.name, "breaker"), state.version,
                                      state.to_json()))
        return replace(state, version=version) if version else None

    # -- ScheduleStore ----------------------------------------------------------------------
    async def now(self) -> float:
        """The server's TIME (or the test clock): the clock every due time is decided on."""
        return float(await self._run("now"))

    async def put_schedule(self, schedule: Schedule) -> None:
        data_field, runs_field = schedule_fields(schedule.name)
        data, runs = records.schedule_values(schedule)
        with translated():  # one HSET of both fields: atomic without a script
            await self._client.hset(self.keys.schedules, mapping={data_field: data, runs_field: runs})

    async def get_schedule(self, name: str) -> Schedule | None:
        with translated():
            data, runs = cast(list[str | None], await self._client.hmget(self.keys.schedules,
                                                                        list(schedule_fields(name))))
        return None if data is None or runs is None else records.decode_schedule(data, runs)

    async def delete_schedule(self, name: str) -> bool:
        with translated():
            return bool(await self._client.hdel(self.keys.schedules, *schedule_fields(name)))

    async def schedules(self) -> list[Schedule]:
        with translated():
            fields = cast(dict[str, str], await self._client.hgetall(self.keys.schedules))
        names = sorted(field[2:] for field in fields if field.startswith("d:"))
        return [records.decode_schedule(fields[f"d:{name}"], fields[f"r:{name}"]) for name in names
                if f"r:{name}" in fields]

    async def advance_schedule(self, name: str, expected_next: float, next_run: float) -> bool:
        with translated():
            advanced = await self._scripts.run("schedule_advance", [self.keys.schedules],
                                               [schedule_fields(name)[1], records.number(expected_next),
                                                records.number(next_run)])
        return bool(advanced)

    # -- RateLimiter ------------------------------------------------------------------------
    async def acquire(self, key: str, rate: float, burst: int) -> float:
        check(rate, burst)
        with translated():
            wait = await self._scripts.run("ratelimit", [*self._prefix, self.keys.rate_bucket(key)],
                                           [self._mode, records.number(rate), int(burst)])
        return float(wait)

    async def count_waiting(self, tenant: str) -> int:
        with translated():
            count = await self._client.hget(self.keys.waiting, tenant)
        return max(0, int(count or 0))

    # -- lifecycle --------------------------------------------------------------------------
    async def ping(self) -> None:
        """Readiness: a PING answered now (a server still loading its dataset answers LOADING)."""
        with translated():
            await self._client.ping()

    async def close(self) -> None:
        """Close both connection pools; a later call opens new ones."""
        await self._conns.close()


class Connections:
    """The clients of one deployment: shared by the backends of its shards (sharded.py), so a sharded deployment
    holds one pool per node, not one per shard. The blocking client (BLPOP, no socket timeout) is made on the first
    wait: API processes never need it."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.client: Client = connect(target)
        self.scripts = Scripts(self.client, functions=not target.nodes)  # a cluster client uses EVALSHA (_lua.py)
        self._blocking: Client | None = None

    def blocking(self) -> Client:
        if self._blocking is None:
            self._blocking = connect(self.target, blocking=True)
        return self._blocking

    async def close(self) -> None:
        clients = [self.client] + ([self._blocking] if self._blocking is not None else [])
        self._blocking = None
        with translated():
            for client in clients:
                await client.aclose()


def _breaker(name: str, value: str) -> BreakerState:
    version, text = value.split(" ", 1)
    return BreakerState.from_json(name, text, int(version))


def _raise_if_cancelled() -> None:
    """Honour a cancellation the driver swallowed: redis-py's async cluster client can absorb a
    CancelledError (seen in CI as a cancelled claim that went on waiting) and leave the task
    cancelling. Claimed leases are returned only when nobody asked to stop."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError

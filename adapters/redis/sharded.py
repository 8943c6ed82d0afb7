"""ShardedRedisBackend: one deployment spread over a Redis Cluster's masters (`?shards=per-queue[&hot=<q>:<n>]`).

Each shard (shards.py: a queue, or one of a hot queue's n parts) is a RedisBackend of its own under the hash tag
`{<partition>/<code>}`, on one shared set of connections: every script stays single-slot and atomic, and the
scripts, the key names and the cost of a call are the unsharded ones. What spans shards is composed here:

- Routing. A task's id names its shard (`<32 hex>.<code>`, minted by task_ids() through core's TaskIds port), so
  get, cancel, settle, extend, transition and leases go straight to one shard. An id without a code (every task
  stored before sharding, or one a caller minted itself) lives in the legacy shard: the partition's own tag
  `{<partition>}`, which is also the global slot (schedules, breakers, workers, pauses, rate buckets, the shard
  registry) and drains in place after a switch.
- Claims. A worker whose queues live in one shard claims exactly as before (one script call, BLPOP). Over several,
  it peeks at each shard's head (one pipelined ZRANGE per queue, at most every PEEK_INTERVAL or when this process
  changed the shard), claims from one shard at the best priority level at a time, in runs of up to 8 claims
  (heads.Runs), filling from the next candidate when that shard runs out, and, idle, listens on every shard's wake
  list at once (one BLPOP per shard; listeners end at their own LISTEN timeout).
- Fan-out. Sweeps, stats, backlog, counts, leases and listings ask every shard and merge (merge.py).

Ordering (the README states it): within a shard everything an unsharded deployment promises; across shards strict
priority as of the claim's peek, and nothing else (no FIFO or fair turns across queues or a hot queue's shards).
Atomicity that spans shards is lost: a bulk submit over several queues (or keyed tasks of a hot queue) is stored
shard by shard, a tenant's cap is checked per shard, and an idempotency key reused for another queue is not
recognised. docs/redis-cluster-sharding.md has the design.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Final, TypeVar

from hexq.adapters.redis import merge
from hexq.adapters.redis.backend import QUERY_SCAN, Connections, RedisBackend, _raise_if_cancelled
from hexq.adapters.redis.connection import Target, parse, translated
from hexq.adapters.redis.heads import Head, Runs, candidates, due_seconds, next_due
from hexq.adapters.redis.keys import check_part, idempotency_field, is_part
from hexq.adapters.redis.shards import shard_of_id, task_id
from hexq.core import search
from hexq.core.breaker import BreakerState
from hexq.core.model import Lease, Page, Settlement, Stats, Task, TaskQuery, TaskStatus, WorkerInfo
from hexq.core.schedule import Schedule

LEGACY: Final = ""  # the code this module gives the legacy shard (the partition's own tag)
PEEK_INTERVAL: Final = 0.02  # a head older than this is read again before a claim relies on it
LEGACY_CHECK: Final = 5.0  # how often a worker looks whether the legacy shard holds work (other processes' writes)
REGISTRY_TTL: Final = 2.0  # how long the shard registry read is trusted
LISTEN: Final = 1.0  # longest BLPOP of one idle listener
_MIN_BLOCK: Final = 0.01
_MAX_CACHED: Final = 4096  # shard backends kept; ids from outside may name any code, those are not kept
_EMPTY_ROUND: Final = 0.01  # pause after a claim round that found nothing where the heads showed work
T = TypeVar("T")
Heads = dict[str, Head]


class ShardedRedisBackend:
    """A Backend over shards of one Redis deployment (see the module docstring)."""

    name = "redis"

    def __init__(self, target: Target, *, test_clock: bool = False, weights: Mapping[str, int] | None = None) -> None:
        if target.sharding is None:
            raise ValueError("ShardedRedisBackend needs a URL with shards=")
        self._target = target
        self._conns = Connections(target)
        self._test_clock = test_clock
        self._weights = dict(weights or {})
        self.layout = target.sharding.layout(target.partition)
        self.legacy = RedisBackend(target, test_clock=test_clock, weights=weights, connections=self._conns)
        self.keys = self.legacy.keys
        self._shards: dict[str, RedisBackend] = {}
        self._registered: set[tuple[str, str]] = set()
        self._registry: dict[str, set[str]] = {}  # code -> queues, as last read
        self._registry_read = -math.inf
        self._heads: dict[str, tuple[float, Head]] = {}  # code -> (monotonic time read, head)
        self._legacy_checked, self._legacy_busy = -math.inf, True
        self._turn = random.randrange(1 << 16)  # where this worker's runs over a level's shards begin
        self._runs = Runs()
        self._now_seen = 0.0
        self._listeners: dict[str, asyncio.Task[bool]] = {}
        self._registering = asyncio.Lock()
        self._idem_checked, self._legacy_keys = -math.inf, True

    @classmethod
    def from_url(cls, url: str, *, test_clock: bool = False,
                 weights: Mapping[str, int] | None = None) -> ShardedRedisBackend:
        return cls(parse(url), test_clock=test_clock, weights=weights)

    # -- shards -----------------------------------------------------------------------------
    def shard(self, code: str) -> RedisBackend:
        """The backend of shard `code` (LEGACY: the legacy shard)."""
        if code == LEGACY:
            return self.legacy
        backend = self._shards.get(code)
        if backend is None:
            backend = RedisBackend(self._target, weights=self._weights, shard=code, connections=self._conns,
                                   clock_key=self.keys.test_clock if self._test_clock else None)
            if len(self._shards) < _MAX_CACHED:
                self._shards[code] = backend
        return backend

    @staticmethod
    def code_of(task_id: str) -> str:
        return (shard_of_id(task_id) if is_part(task_id) else None) or LEGACY

    def _for_id(self, task_id: str) -> RedisBackend:
        return self.shard(self.code_of(task_id))

    def _touched(self, code: str) -> None:
        """This process changed shard `code`: its head must be read again, and the legacy shard is busy."""
        self._heads.pop(code, None)
        if code == LEGACY:
            self._legacy_busy = True

    async def _register(self, places: Iterable[tuple[str, str]]) -> None:
        """Record (shard, queue) pairs in the global registry before their first task is stored there (once each
        per process), so every other process's sweeps, stats and listings find the shard."""
        wanted = {place for place in places if place not in self._registered and place[0] != LEGACY}
        if not wanted:
            return
        async with self._registering:  # one write for a burst of first submits (and a cluster client set up once)
            new = wanted - self._registered
            if new:
                with translated():
                    await self._conns.client.hset(self.keys.shards,
                                                  mapping={f"{code} {queue}": "1" for code, queue in new})
                self._registered.update(new)
                for code, queue in new:
                    self._registry.setdefault(code, set()).add(queue)

    async def _known(self) -> dict[str, set[str]]:
        """Every registered shard and its queues (read again at most every REGISTRY_TTL)."""
        clock = time.monotonic()
        if clock - self._registry_read > REGISTRY_TTL:
            with translated():
                fields = await self._conns.client.hkeys(self.keys.shards)
            registry: dict[str, set[str]] = {}
            for entry in fields:
                code, _, queue = str(entry).partition(" ")
                if is_part(code) and is_part(queue):
                    registry.setdefault(code, set()).add(queue)
            for code, queue in self._registered:
                registry.setdefault(code, set()).add(queue)
            self._registry, self._registry_read = registry, clock
        return self._registry

    async def _everywhere(self) -> list[str]:
        """Every shard: the legacy one and all registered."""
        return [LEGACY, *sorted(await self._known())]

    async def _shards_of(self, queue: str) -> list[str]:
        """The shards `queue`'s tasks may be in: by this configuration, by the registry, and the legacy one."""
        codes = set(self.layout.shards(queue))
        codes.update(code for code, queues in (await self._known()).items() if queue in queues)
        return [LEGACY, *sorted(codes)]

    async def _serving(self, names: Sequence[str]) -> dict[str, list[str]]:
        """The shards a claim of `names` looks at, each with the names of its queues among them. The legacy shard
        only while it holds work (checked every LEGACY_CHECK, and at once after this process wrote to it)."""
        serving: dict[str, list[str]] = {}
        registry = await self._known()
        for queue in names:
            for code in self.layout.shards(queue):
                serving.setdefault(code, []).append(queue)
        for code, queues in registry.items():
            for queue in names:
                if queue in queues and queue not in serving.get(code, []):
                    serving.setdefault(code, []).append(queue)
        if await self._legacy_holds_work():
            serving[LEGACY] = list(names)
        return serving

    async def _legacy_holds_work(self) -> bool:
        clock = time.monotonic()
        if clock - self._legacy_checked > LEGACY_CHECK:
            queued, scheduled = await asyncio.gather(self.legacy.backlog(), self._zcard(self.keys.delayed))
            self._legacy_busy, self._legacy_checked = queued > 0 or scheduled > 0, clock
        return self._legacy_busy

    async def _zcard(self, key: str) -> int:
        with translated():
            return int(await self._conns.client.zcard(key))

    # -- TaskIds ----------------------------------------------------------------------------
    def task_ids(self, tasks: Sequence[Task]) -> list[str]:
        """Each new task's id names the shard it goes to; one request moves a hot queue's round robin once."""
        ids = [task_id(task.id, self.layout.route(task.queue, task.tenant, task.idempotency_key))
               if shard_of_id(task.id) is None else task.id for task in tasks]
        self.layout.next_turn()
        return ids

    # -- Broker -----------------------------------------------------------------------------
    async def enqueue(self, tasks: Sequence[Task], *, cap: int = 0) -> list[Task]:
        """Each shard's tasks in one call there, the calls concurrent. A cap is checked per shard."""
        if not tasks:
            return []
        tasks = await self._keys_kept(tasks)
        groups = _group([self.code_of(task.id) for task in tasks])
        await self._register((code, tasks[i].queue) for code, places in groups.items() for i in places)
        for code in groups:
            self._touched(code)
        if len(groups) == 1:  # the usual request, one queue: no gather (a task per call costs ~10 µs)
            return await self.shard(next(iter(groups))).enqueue(tasks, cap=cap)
        stored = await asyncio.gather(*(self.shard(code).enqueue([tasks[i] for i in places], cap=cap)
                                        for code, places in groups.items()))
        return _ungroup(groups, stored, len(tasks))

    async def _keys_kept(self, tasks: Sequence[Task]) -> Sequence[Task]:
        """A keyed task whose key the legacy shard already holds (stored before the switch) goes there, under its
        id's random part, so the request meets its first copy (the same task back, or a mismatch) as before."""
        keyed = [i for i, task in enumerate(tasks) if task.idempotency_key is not None and self.code_of(task.id)]
        if not keyed or not await self._legacy_has_keys():
            return tasks
        fields = [idempotency_field(tasks[i].tenant, tasks[i].idempotency_key) for i in keyed]
        with translated():
            found = await self._conns.client.hmget(self.keys.idem, fields)
        kept = list(tasks)
        for i, hit in zip(keyed, found, strict=True):
            if hit is not None:
                kept[i] = replace(tasks[i], id=tasks[i].id[:32])
        return kept

    async def _legacy_has_keys(self) -> bool:
        """Whether the legacy shard holds any idempotency key (read at most every LEGACY_CHECK, by one caller of a
        burst: a burst of first commands on fresh connections is what redis-py's cluster client handles worst)."""
        if time.monotonic() - self._idem_checked > LEGACY_CHECK:
            async with self._registering:
                if time.monotonic() - self._idem_checked > LEGACY_CHECK:
                    with translated():
                        self._legacy_keys = bool(await self._conns.client.hlen(self.keys.idem))
                    self._idem_checked = time.monotonic()
        return self._legacy_keys

    async def claim(self, queues: Sequence[str], n: int, *, lease_seconds: float, worker_id: str,
                    wait: float = 0.0) -> list[Lease]:
        names = [check_part(queue, "queue") for queue in queues]
        if n <= 0 or not names:
            return []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            serving = await self._serving(names)
            if len(serving) == 1:  # one shard: exactly the unsharded claim, blocking included
                code, its = next(iter(serving.items()))
                return await self.shard(code).claim(its, n, lease_seconds=lease_seconds, worker_id=worker_id,
                                                    wait=max(0.0, deadline - loop.time()))
            _, leases, heads = await self._round(serving, {}, n, lease_seconds, worker_id)
            remaining = deadline - loop.time()
            if leases or remaining <= 0:
                return leases
            if candidates(list(heads.items()), self._now_seen):
                await asyncio.sleep(min(remaining, _EMPTY_ROUND))  # the heads showed work another claim took
                continue
            due_in = next_due(list(heads.values()), self._now_seen)
            await self._await_any(serving, max(min(remaining, due_in if due_in is not None else remaining),
                                               _MIN_BLOCK))
            _raise_if_cancelled()

    async def extend(self, leases: Sequence[Lease], lease_seconds: float) -> list[Lease | None]:
        if not leases:
            return []
        groups = _group([self.code_of(lease.task.id) for lease in leases])
        if len(groups) == 1:
            return await self.shard(next(iter(groups))).extend(leases, lease_seconds)
        answers = await asyncio.gather(*(self.shard(code).extend([leases[i] for i in places], lease_seconds)
                                         for code, places in groups.items()))
        return _ungroup(groups, answers, len(leases))

    async def settle(self, settlements: Sequence[Settlement]) -> list[bool]:
        if not settlements:
            return []
        groups = _group([self.code_of(s.lease.task.id) for s in settlements])
        self._settled(settlements)
        if len(groups) == 1:
            return await self.shard(next(iter(groups))).settle(settlements)
        answers = await asyncio.gather(*(self.shard(code).settle([settlements[i] for i in places])
                                         for code, places in groups.items()))
        return _ungroup(groups, answers, len(settlements))

    def _settled(self, settlements: Sequence[Settlement]) -> None:
        for s in settlements:  # a task put back (retry, release) may change its shard's head
            if not s.task.is_terminal:
                self._touched(self.code_of(s.task.id))

    # -- SettleAndClaim ---------------------------------------------------------------------
    async def settle_and_claim(self, settlements: Sequence[Settlement], queues: Sequence[str], n: int, *,
                               lease_seconds: float, worker_id: str) -> tuple[list[bool], list[Lease]]:
        names = [check_part(queue, "queue") for queue in queues]
        n = max(n, 0) if names else 0
        if not settlements and not n:
            return [], []
        groups = _group([self.code_of(s.lease.task.id) for s in settlements])
        serving = await self._serving(names) if n else {}
        self._settled(settlements)
        if len(serving) == 1 and set(groups) <= set(serving):  # one shard: one script call, as unsharded
            code, its = next(iter(serving.items()))
            return await self.shard(code).settle_and_claim(settlements, its, n, lease_seconds=lease_seconds,
                                                           worker_id=worker_id)
        settles = {code: [settlements[i] for i in places] for code, places in groups.items()}
        applied, leases, _ = await self._round(serving, settles, n, lease_seconds, worker_id)
        return _ungroup(groups, [applied[code] for code in groups], len(settlements)), leases

    async def _round(self, serving: Mapping[str, list[str]], settles: Mapping[str, Sequence[Settlement]], n: int,
                     lease_seconds: float, worker_id: str) -> tuple[dict[str, list[bool]], list[Lease], Heads]:
        """One claim over several shards, with the settlements of each shard sent in the same call there:
        (applied per shard, leases, the heads it went by)."""
        heads = await self._peek(serving) if n else {}
        looked = dict(heads)
        applied: dict[str, list[bool]] = {}
        leases: list[Lease] = []
        for _ in range(max(len(serving), 1)):  # a shard this claim emptied lets the next candidate fill the rest
            chosen = candidates(list(looked.items()), self._now_seen) if n > len(leases) else []
            plan = {self._runs.pick(chosen, self._turn): n - len(leases)} if chosen else {}
            self._turn += 1
            codes = list(dict.fromkeys([*plan, *settles]))
            if not codes:
                break
            answers = await asyncio.gather(*(self._call(code, serving.get(code, []), plan.get(code, 0),
                                                        settles.get(code, ()), lease_seconds, worker_id)
                                             for code in codes))
            settles = {}
            for code, (done, got) in zip(codes, answers, strict=True):
                applied.setdefault(code, done)
                leases += got
                if len(got) < plan.get(code, 0):
                    self._touched(code)  # it had less than its head promised: look again next time
                    looked[code] = Head(None, None)
            if len(leases) >= n or all(len(got) >= plan.get(code, 0) for code, (_, got) in zip(codes, answers,
                                                                                                strict=True)):
                break
        return applied, leases, heads

    async def _call(self, code: str, names: list[str], n: int, settles: Sequence[Settlement], lease_seconds: float,
                    worker_id: str) -> tuple[list[bool], list[Lease]]:
        backend = self.shard(code)
        if n and settles:
            return await backend.settle_and_claim(settles, names, n, lease_seconds=lease_seconds, worker_id=worker_id)
        if settles:
            return await backend.settle(settles), []
        leases, _ = await backend.claim_once(names, n, lease_seconds=lease_seconds, worker_id=worker_id)
        return [], leases

    async def _peek(self, serving: Mapping[str, list[str]]) -> dict[str, Head]:
        """Each shard's head: from this process's last look if younger than PEEK_INTERVAL, else read now, all
        shards in one pipeline (a cluster pipeline sends one request per node)."""
        clock = time.monotonic()
        stale = [code for code in serving if clock - self._heads.get(code, (-math.inf, None))[0] > PEEK_INTERVAL]
        if stale:
            with translated():
                pipe = self._conns.client.pipeline(transaction=False)
                pipe.smembers(self.keys.paused)
                if self._test_clock:
                    pipe.get(self.keys.test_clock)
                for code in stale:
                    keys = self.shard(code).keys
                    for queue in serving[code]:
                        pipe.zrange(keys.ready(queue), 0, 0, withscores=True)
                    pipe.zrange(keys.delayed, 0, 0, withscores=True)
                replies: list[Any] = await pipe.execute()
            paused = set(replies[0])
            frozen, replies = (replies[1], replies[2:]) if self._test_clock else (None, replies[1:])
            for code in stale:
                names = serving[code]
                ready = [reply[0][1] for queue, reply in zip(names, replies, strict=False)
                         if reply and queue not in paused]
                delayed = replies[len(names)]
                replies = replies[len(names) + 1:]
                self._heads[code] = (clock, Head(min(ready) if ready else None,
                                                 due_seconds(delayed[0][1]) if delayed else None))
            self._now_seen = float(frozen) if frozen else time.time()
        elif not self._test_clock:
            self._now_seen = time.time()
        return {code: self._heads[code][1] for code in serving}

    async def _await_any(self, serving: Mapping[str, list[str]], seconds: float) -> None:
        """Wait for a wake token in any of the shards, or `seconds`. A listener outlives the wait that started it
        (up to LISTEN): cancelling a BLPOP costs its connection, so the next wait takes it over."""
        for code, names in serving.items():
            if code not in self._listeners:
                self._listeners[code] = asyncio.create_task(self.shard(code).await_wake(names, min(seconds, LISTEN)))
        await asyncio.wait([self._listeners[code] for code in serving], timeout=seconds,
                           return_when=asyncio.FIRST_COMPLETED)
        for code, listener in list(self._listeners.items()):
            if listener.done():
                del self._listeners[code]
                if not listener.cancelled() and listener.exception() is None and listener.result():
                    self._touched(code)
                elif not listener.cancelled() and (error := listener.exception()) is not None:
                    raise error

    # -- FinishWaiter -----------------------------------------------------------------------
    async def wait_finished(self, task_id: str, seconds: float) -> Task | None:
        return await self._for_id(task_id).wait_finished(task_id, seconds)

    # -- Sweeper ----------------------------------------------------------------------------
    async def promote_due(self, limit: int) -> int:
        return sum(await self._spread(limit, lambda backend, k: backend.promote_due(k), int))

    async def reclaim_expired(self, limit: int, lease_seconds: float) -> list[Lease]:
        parts = await self._spread(limit, lambda backend, k: backend.reclaim_expired(k, lease_seconds), len)
        return [lease for part in parts for lease in part]

    async def purge_finished(self, older_than: float, limit: int) -> int:
        return sum(await self._spread(limit, lambda backend, k: backend.purge_finished(older_than, k), int))

    async def _spread(self, limit: int, step: Callable[[RedisBackend, int], Awaitable[T]],
                      size: Callable[[T], int]) -> list[T]:
        """`step(shard backend, its share)` on every shard, at most `limit` in all: shares split evenly (rotating
        who gets the remainder), the calls concurrent; what shards that ran out left over goes, in the next
        round, to the shards that used all of theirs."""
        codes, left, done = await self._everywhere(), max(limit, 0), []
        while left > 0 and codes:
            shares = [(code, k) for code, k in zip(codes, _split(left, len(codes), self._turn), strict=True) if k]
            self._turn += 1
            answers = await asyncio.gather(*(step(self.shard(code), k) for code, k in shares))
            done += answers
            left -= sum(size(answer) for answer in answers)
            codes = [code for (code, k), answer in zip(shares, answers, strict=True) if size(answer) >= k]
        return done

    async def backlog(self) -> int:
        return sum(await asyncio.gather(*(self.shard(code).backlog() for code in await self._everywhere())))

    # -- TaskStore --------------------------------------------------------------------------
    async def get(self, task_id: str) -> Task | None:
        return await self._for_id(task_id).get(task_id)

    async def request_cancel(self, task_id: str) -> Task | None:
        return await self._for_id(task_id).request_cancel(task_id)

    async def transition(self, task: Task, expected: TaskStatus) -> Task | None:
        self._touched(self.code_of(task.id))
        return await self._for_id(task.id).transition(task, expected)

    async def stats(self) -> Stats:
        parts = await asyncio.gather(*(self.shard(code).stats() for code in await self._everywhere()))
        return merge.stats(parts, parts[0].paused)  # the legacy shard's paused set is the global one

    async def shard_stats(self) -> list[tuple[str, frozenset[str], Stats]]:
        """Every shard's own stats, with its code (LEGACY: '') and the queues the registry lists for it: where a
        deployment's tasks are (hexq migrate status: has the legacy shard drained?)."""
        known = await self._known()
        codes = [LEGACY, *sorted(known)]
        parts = await asyncio.gather(*(self.shard(code).stats() for code in codes))
        return [(code, frozenset(known.get(code, ())), part) for code, part in zip(codes, parts, strict=True)]

    async def count_waiting(self, tenant: str) -> int:
        return sum(await asyncio.gather(*(self.shard(code).count_waiting(tenant)
                                          for code in await self._everywhere())))

    async def query(self, query: TaskQuery) -> Page:
        if query.queue and not is_part(query.queue):  # no shard can hold a queue that cannot be a key part
            return Page([], None, 0)
        codes = await (self._shards_of(query.queue) if query.queue else self._everywhere())
        cursors = merge.parse(query.cursor, codes)
        if not query.search:
            items, cursor, scanned = await self._page(query, max(query.limit, 0), cursors, QUERY_SCAN)
            return Page(items, cursor or None, scanned)
        found: list[Task] = []
        scanned, text, forms = 0, query.search, search.forms(query.search)
        while True:  # as RedisBackend._search: bounded calls until the page is full or max_scan is reached
            bound = max(1, min(QUERY_SCAN, query.max_scan - scanned) // max(len(cursors), 1))
            items, cursor, examined = await self._page(query, query.limit - len(found), cursors, bound, *forms)
            scanned += examined
            found += [task for task in items if search.matches(task, text)]
            if not cursor or len(found) >= query.limit or scanned >= query.max_scan:
                return Page(found, cursor or None, scanned)
            cursors = merge.parse(cursor, [])

    async def _page(self, query: TaskQuery, limit: int, cursors: Mapping[str, str], bound: int,
                    *forms: str) -> tuple[list[Task], str, int]:
        codes = list(cursors)
        answers = await asyncio.gather(*(self.shard(code).page(query, limit, cursors[code], bound, *forms)
                                         for code in codes))
        return merge.page(dict(zip(codes, answers, strict=True)), limit)

    # -- LeaseReader ------------------------------------------------------------------------
    async def lease(self, task_id: str) -> Lease | None:
        return await self._for_id(task_id).lease(task_id)

    async def leases(self, limit: int, *, tenant: str | None = None) -> list[Lease]:
        if limit <= 0:
            return []
        parts = await asyncio.gather(*(self.shard(code).leases(limit, tenant=tenant)
                                       for code in await self._everywhere()))
        return sorted((lease for part in parts for lease in part), key=lambda lease: lease.expires_at)[:limit]

    # -- QueueControl: the legacy shard's set is the one every process reads; each shard keeps a copy, because
    #    its claim script reads the paused set of its own slot.
    async def pause(self, queue: str) -> bool:
        changed = await self.legacy.pause(queue)
        await asyncio.gather(*(self.shard(code).pause(queue) for code in await self._shards_of(queue) if code))
        return changed

    async def resume(self, queue: str) -> bool:
        changed = await self.legacy.resume(queue)
        codes = await self._shards_of(queue)
        await asyncio.gather(*(self.shard(code).resume(queue) for code in codes if code))
        for code in codes:
            self._touched(code)
        return changed

    async def paused(self) -> frozenset[str]:
        return await self.legacy.paused()

    # -- global: the legacy shard's slot ----------------------------------------------------
    async def beat(self, worker: WorkerInfo, ttl: float) -> None:
        await self.legacy.beat(worker, ttl)

    async def leave(self, worker_id: str) -> None:
        await self.legacy.leave(worker_id)

    async def workers(self) -> list[WorkerInfo]:
        return await self.legacy.workers()

    async def breaker_states(self) -> tuple[float, list[BreakerState]]:
        return await self.legacy.breaker_states()

    async def put_breaker(self, state: BreakerState) -> BreakerState | None:
        return await self.legacy.put_breaker(state)

    async def now(self) -> float:
        return await self.legacy.now()

    async def put_schedule(self, schedule: Schedule) -> None:
        await self.legacy.put_schedule(schedule)

    async def get_schedule(self, name: str) -> Schedule | None:
        return await self.legacy.get_schedule(name)

    async def delete_schedule(self, name: str) -> bool:
        return await self.legacy.delete_schedule(name)

    async def schedules(self) -> list[Schedule]:
        return await self.legacy.schedules()

    async def advance_schedule(self, name: str, expected_next: float, next_run: float) -> bool:
        return await self.legacy.advance_schedule(name, expected_next, next_run)

    async def acquire(self, key: str, rate: float, burst: int) -> float:
        return await self.legacy.acquire(key, rate, burst)

    async def ping(self) -> None:
        await self.legacy.ping()

    async def close(self) -> None:
        for listener in self._listeners.values():
            listener.cancel()
        await asyncio.gather(*self._listeners.values(), return_exceptions=True)
        self._listeners.clear()
        await self._conns.close()


def _group(codes: Sequence[str]) -> dict[str, list[int]]:
    """Positions by shard code, in first-seen order."""
    groups: dict[str, list[int]] = {}
    for i, code in enumerate(codes):
        groups.setdefault(code, []).append(i)
    return groups


def _ungroup(groups: Mapping[str, list[int]], answers: Sequence[Sequence[T]], size: int) -> list[T]:
    """The shards' answers back in the positions their requests came from."""
    out: list[Any] = [None] * size
    for places, answer in zip(groups.values(), answers, strict=True):
        for i, value in zip(places, answer, strict=True):
            out[i] = value
    return out


def _split(total: int, k: int, turn: int) -> list[int]:
    """`total` in k near-equal shares; the larger shares start at position `turn` (mod k)."""
    share, extra = divmod(total, k)
    return [share + ((i - turn) % k < extra) for i in range(k)]

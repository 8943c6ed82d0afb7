"""RELIABILITY T25: a Hypothesis state machine over the memory, SQLite and Redis backends, with a FakeClock.

Rules: enqueue, claim, settle success, settle failure, let leases expire and reclaim them (as the poller
does), promote due tasks, cancel, and try to settle with a stale token. After every step: each task is in
exactly one status; running <=> the model holds its current lease; attempts <= max_attempts; a succeeded
task is never claimed again; a stale token never settles.

On Redis the scripts read "now" from the partition's test-clock key (RedisBackend(test_clock=True)):
the machine's clock is a redis_server.LinkedClock, whose advance() also SETs that key, so leases expire
and are reclaimed by the server-side Lua on the same time the services see. Each example gets a flushed
database (redis_server.fresh_backend), closed again at teardown.
"""

from __future__ import annotations

import asyncio
import tempfile
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test
from redis_server import LinkedClock, fresh_backend

from hexq.adapters.memory import MemoryBackend
from hexq.adapters.sqlite import SQLiteBackend
from hexq.core import outcome
from hexq.core.errors import InvalidTransition
from hexq.core.model import Lease, Settlement, TaskQuery, TaskStatus
from hexq.core.ports import Backend
from hexq.core.registry import Registry
from hexq.core.retry import RetryPolicy
from hexq.core.services import SubmitRequest, TaskService

pytestmark = pytest.mark.reliability

LEASE = 30.0
POLICY = RetryPolicy(base=5.0, cap=20.0, jitter=0.0)


def _registry() -> Registry:
    registry = Registry()

    @registry.task("job", max_attempts=3)
    async def job(payload: dict[str, Any]) -> None:
        return None

    return registry


class QueueMachine(RuleBasedStateMachine):
    """Over the memory backend; subclasses override open_backend()."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = LinkedClock()  # a FakeClock; only the Redis machine links it to the server
        self.cleanup = AsyncExitStack()  # unwound at teardown: closes the backend (and its files or keys)
        self.backend: Any = self.run(self.open_backend())
        self.service = TaskService(self.backend, self.backend, _registry(), self.clock)
        self.ids: list[str] = []
        self.current: dict[str, Lease] = {}  # task id -> the lease a worker holds now
        self.stale: list[Lease] = []
        self.succeeded: set[str] = set()

    async def open_backend(self) -> Backend:
        backend = MemoryBackend(self.clock)
        self.cleanup.push_async_callback(backend.close)
        return backend

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        try:
            self.run(self.cleanup.aclose())
        finally:
            self.loop.close()

    @rule(delay=st.sampled_from([None, 0.0, 10.0]))
    def enqueue(self, delay: float | None) -> None:
        task = self.run(self.service.submit(SubmitRequest("job", {}, delay=delay))).task
        self.ids.append(task.id)

    @rule(n=st.integers(1, 3))
    def claim(self, n: int) -> None:
        leases = self.run(self.backend.claim(["default"], n, lease_seconds=LEASE, worker_id="w"))
        for lease in leases:
            assert lease.task.id not in self.succeeded, "a succeeded task was claimed again"
            assert lease.task.id not in self.current
            assert lease.task.status is TaskStatus.RUNNING and lease.expires_at > self.clock.now()
            self.current[lease.task.id] = lease

    def leased(self) -> list[str]:
        """Leased ids in enqueue order: task ids are random (uuid4), so sorting them would make the same draw
        pick a different task when Hypothesis replays a prefix (FlakyStrategyDefinition)."""
        return [task_id for task_id in self.ids if task_id in self.current]

    def _settle(self, lease: Lease, task: Any) -> bool:
        return bool(self.run(self.backend.settle([Settlement(lease, task)]))[0])

    @precondition(lambda self: self.current)
    @rule(data=st.data())
    def settle_success(self, data: st.DataObject) -> None:
        task_id = data.draw(st.sampled_from(self.leased()))
        lease = self.current.pop(task_id)
        assert self._settle(lease, outcome.succeeded(lease.task, None))
        self.stale.append(lease)
        self.succeeded.add(task_id)

    @precondition(lambda self: self.current)
    @rule(data=st.data())
    def settle_failure(self, data: st.DataObject) -> None:
        task_id = data.draw(st.sampled_from(self.leased()))
        lease = self.current.pop(task_id)
        assert self._settle(lease, outcome.failed(lease.task, "boom", POLICY, rand=lambda: 0.5))
        self.stale.append(lease)

    @rule()
    def expire_and_reclaim(self) -> None:
        self.clock.advance(LEASE + 1)
        reclaimed = self.run(self.backend.reclaim_expired(100, LEASE))
        assert {lease.task.id for lease in reclaimed} == set(self.current)
        for lease in reclaimed:
            self.stale.append(self.current.pop(lease.task.id))
            assert self._settle(lease, outcome.lost(lease.task))
            self.stale.append(lease)

    @rule(seconds=st.sampled_from([0.0, 5.0, 25.0]))
    def promote_due(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.run(self.backend.promote_due(100))

    @precondition(lambda self: self.ids)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        task_id = data.draw(st.sampled_from(self.ids))
        before = self.run(self.backend.get(task_id))
        try:
            self.run(self.service.cancel(task_id))
        except InvalidTransition:
            assert before.status not in (TaskStatus.QUEUED, TaskStatus.SCHEDULED)

    @precondition(lambda self: self.stale)
    @rule(data=st.data())
    def stale_token_never_settles(self, data: st.DataObject) -> None:
        lease = data.draw(st.sampled_from(self.stale))
        assert not self._settle(lease, outcome.succeeded(lease.task, "late"))

    @invariant()
    def every_task_in_one_status_and_running_iff_leased(self) -> None:
        seen: dict[str, TaskStatus] = {}
        for status in TaskStatus:
            page = self.run(self.backend.query(TaskQuery(status=status, limit=500)))
            for task in page.items:
                assert task.id not in seen, f"{task.id} is both {seen[task.id]} and {status}"
                seen[task.id] = status
                assert task.attempts <= task.max_attempts
        assert set(seen) == set(self.ids)
        assert {i for i, s in seen.items() if s is TaskStatus.RUNNING} == set(self.current)
        assert all(seen[i] is TaskStatus.SUCCEEDED for i in self.succeeded)


class SQLiteQueueMachine(QueueMachine):
    async def open_backend(self) -> Backend:
        directory = self.cleanup.enter_context(tempfile.TemporaryDirectory())
        backend = SQLiteBackend(str(Path(directory) / "hexq.db"), self.clock)
        self.cleanup.push_async_callback(backend.close)
        return backend


class RedisQueueMachine(QueueMachine):
    """Over RedisBackend(test_clock=True) on a flushed database: fresh_backend sets the test-clock key to
    clock.now() and links the clock, so every advance() moves the server's "now" too."""

    url: ClassVar[str]  # the session's Redis (the redis_url fixture), set by the test below

    async def open_backend(self) -> Backend:
        return await self.cleanup.enter_async_context(fresh_backend(self.url, self.clock))


BOUNDED = settings(max_examples=50, stateful_step_count=30, deadline=None, database=None,
                   suppress_health_check=[HealthCheck.too_slow])
TestMemoryStateMachine = QueueMachine.TestCase
TestMemoryStateMachine.settings = BOUNDED
TestSQLiteStateMachine = SQLiteQueueMachine.TestCase
TestSQLiteStateMachine.settings = BOUNDED
# More examples than above, and still ~15 s: with swarm testing few examples both hold a lease and expire it
# (25 examples reclaimed 0-2 live leases; 100 reclaim ~50-100), and that server-side reclaim is T25's point.
REDIS_BOUNDED = settings(BOUNDED, max_examples=100)


@pytest.mark.redis
def test_redis_state_machine(redis_url: str) -> None:
    class OnSessionRedis(RedisQueueMachine):
        url = redis_url

    run_state_machine_as_test(OnSessionRedis, settings=REDIS_BOUNDED)


@pytest.mark.redis
def test_redis_sharded_state_machine(redis_url: str) -> None:
    """The same machine over a sharded layout whose one queue is split in three shards (adapters/redis/sharded.py):
    claims, settles, reclaims and sweeps go across shards, and every invariant of the model still holds."""

    class OnShardedRedis(RedisQueueMachine):
        url = redis_url + "?shards=per-queue&hot=default:3"

    run_state_machine_as_test(OnShardedRedis, settings=REDIS_BOUNDED)

"""One clock for due times: every backend stamps the times that decide behaviour with its own clock.

The API process and the worker here read clocks an hour off the backend's (FakeClock, which the Redis
legs link to the server's test-clock key): what they send must not move a due time, a lease or a
timestamp. tests/integration/test_clock_skew.py does the same with real processes under faketime.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from hexq.core import outcome
from hexq.core.clock import FakeClock
from hexq.core.model import Lease, Settlement, Task, TaskStatus
from hexq.core.ports import Backend
from hexq.core.registry import Registry
from hexq.core.retry import RetryPolicy
from hexq.core.services import SubmitRequest, TaskService

MakeTask = Callable[..., Task]
HOUR = 3600.0
LEASE = 30.0


async def claim(backend: Backend, n: int = 1) -> list[Lease]:
    return await backend.claim(["default"], n, lease_seconds=LEASE, worker_id="w1")


@pytest.mark.parametrize("skew", [HOUR, -HOUR], ids=["api-ahead", "api-behind"])
async def test_a_delay_is_counted_from_the_backends_clock(backend: Backend, registry: Registry, clock: FakeClock,
                                                          skew: float) -> None:
    api = TaskService(backend, backend, registry, FakeClock(clock.now() + skew))

    submitted = (await api.submit(SubmitRequest("echo", {}, delay=30))).task

    assert (submitted.status, submitted.created_at, submitted.run_at) == (TaskStatus.SCHEDULED, clock.now(),
                                                                          clock.now() + 30)
    assert await backend.get(submitted.id) == submitted
    clock.advance(29.5)
    assert await claim(backend) == []  # not early, whatever the API's clock said
    clock.advance(0.5)
    [lease] = await claim(backend)
    assert lease.task.id == submitted.id and lease.task.started_at == clock.now()


@pytest.mark.parametrize("skew", [HOUR, -HOUR], ids=["api-ahead", "api-behind"])
async def test_the_backend_decides_whether_an_absolute_run_at_is_due(backend: Backend, registry: Registry,
                                                                     clock: FakeClock, skew: float) -> None:
    api = TaskService(backend, backend, registry, FakeClock(clock.now() + skew))
    future = (await api.submit(SubmitRequest("echo", {"n": 1}, run_at=clock.now() + 60))).task
    past = (await api.submit(SubmitRequest("echo", {"n": 2}, run_at=clock.now() - 60))).task

    assert (future.status, future.run_at) == (TaskStatus.SCHEDULED, clock.now() + 60)
    assert (past.status, past.run_at) == (TaskStatus.QUEUED, clock.now())
    assert [lease.task.id for lease in await claim(backend, 10)] == [past.id]


async def test_a_retry_is_due_its_backoff_after_the_backends_now(backend: Backend, make_task: MakeTask,
                                                                 clock: FakeClock) -> None:
    await backend.enqueue([make_task(max_attempts=3)])
    [lease] = await claim(backend)
    clock.advance(5)
    retry = outcome.failed(lease.task, "boom", RetryPolicy(base=10, cap=10, jitter=0))
    # A worker an hour behind once sent run_at = its now + backoff: in the past, so the retry ran at once.
    # An hour ahead, it ran an hour late. Now only the duration travels.
    assert retry.delay == 10

    assert await backend.settle([Settlement(lease, retry)]) == [True]

    stored = await backend.get(lease.task.id)
    assert stored is not None and (stored.status, stored.run_at) == (TaskStatus.SCHEDULED, clock.now() + 10)
    clock.advance(9.5)
    await backend.promote_due(10)
    assert await claim(backend) == []
    clock.advance(0.5)
    await backend.promote_due(10)
    assert [again.task.id for again in await claim(backend)] == [lease.task.id]


@pytest.mark.parametrize("skew", [HOUR, -HOUR], ids=["worker-ahead", "worker-behind"])
async def test_finished_at_is_the_backends_time_not_the_workers(backend: Backend, make_task: MakeTask,
                                                                clock: FakeClock, skew: float) -> None:
    await backend.enqueue([make_task()])
    [lease] = await claim(backend)
    clock.advance(2)
    # What an older worker sent: its own idea of the finishing time.
    done = replace(outcome.succeeded(lease.task, "ok"), finished_at=clock.now() + skew)

    assert await backend.settle([Settlement(lease, done)]) == [True]

    stored = await backend.get(lease.task.id)
    assert stored is not None and stored.finished_at == clock.now()
    # so retention counts from the backend's clock too: not purged a second early, purged when due
    assert await backend.purge_finished(older_than=10, limit=10) == 0
    clock.advance(10.5)
    assert await backend.purge_finished(older_than=10, limit=10) == 1


async def test_cancel_and_replay_stamp_the_backends_time(backend: Backend, registry: Registry, make_task: MakeTask,
                                                         clock: FakeClock) -> None:
    api = TaskService(backend, backend, registry, FakeClock(clock.now() - HOUR))
    waiting = (await api.submit(SubmitRequest("echo", {}))).task
    clock.advance(3)

    cancelled = await api.cancel(waiting.id)

    assert (cancelled.status, cancelled.finished_at) == (TaskStatus.CANCELLED, clock.now())
    assert await backend.get(waiting.id) == cancelled

    await backend.enqueue([make_task(max_attempts=1)])
    [lease] = await claim(backend)
    await backend.settle([Settlement(lease, outcome.failed(lease.task, "boom", RetryPolicy()))])
    clock.advance(3)
    [replayed] = await api.replay([lease.task.id])
    assert (replayed.status, replayed.run_at, replayed.finished_at) == (TaskStatus.QUEUED, clock.now(), None)
    assert await backend.get(lease.task.id) == replayed


async def test_the_schedule_clock_is_the_backends(backend: Backend, clock: FakeClock) -> None:
    assert await backend.now() == clock.now()
    clock.advance(12.25)
    assert await backend.now() == clock.now()

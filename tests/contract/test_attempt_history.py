"""A task's attempt history (Task.history) on every backend: each attempt that did not succeed is kept, with
its worker, token, times, error, traceback and backoff; the last HISTORY_LIMIT of them; a success adds none."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from hexq.core import outcome
from hexq.core.clock import FakeClock
from hexq.core.model import HISTORY_LIMIT, AttemptOutcome, Lease, Settlement, Task, TaskStatus
from hexq.core.poller import Poller, PollerConfig
from hexq.core.ports import Backend
from hexq.core.registry import Registry, TaskSpec
from hexq.core.retry import RetryPolicy
from hexq.core.schedules import ScheduleService
from hexq.core.services import SubmitRequest, TaskService
from hexq.core.worker import Invocation, WorkerConfig

MakeTask = Callable[..., Task]
LEASE = 30.0
POLICY = RetryPolicy(base=10.0, cap=100.0, jitter=0.0)


async def claim(backend: Backend) -> Lease:
    [lease] = await backend.claim(["default"], 1, lease_seconds=LEASE, worker_id="w1")
    return lease


async def fail(backend: Backend, lease: Lease, seconds: float = 0.25) -> Task:
    """Settle `lease` as a failed attempt, as the worker does (core.running): the outcome, then ended()."""
    after = outcome.failed(lease.task, "ValueError: boom", POLICY, traceback="Traceback ...\nValueError: boom")
    after = outcome.ended(lease.task, after, lease.token, seconds=seconds)
    assert await backend.settle([Settlement(lease, after)]) == [True]
    return after


async def stored(backend: Backend, task_id: str) -> Task:
    task = await backend.get(task_id)
    assert task is not None
    return task


async def test_a_first_attempt_that_succeeds_stores_no_history(backend: Backend, make_task: MakeTask) -> None:
    task = make_task()
    await backend.enqueue([task])
    lease = await claim(backend)
    await backend.settle([Settlement(lease, outcome.succeeded(lease.task, 1))])

    assert (await stored(backend, task.id)).history == ()


async def test_a_failed_attempt_is_kept_with_its_worker_token_times_error_and_backoff(
        backend: Backend, make_task: MakeTask, clock: FakeClock) -> None:
    task = make_task(max_attempts=3)
    await backend.enqueue([task])
    lease = await claim(backend)
    await fail(backend, lease, seconds=0.25)

    [attempt] = (await stored(backend, task.id)).history
    assert (attempt.number, attempt.outcome, attempt.worker_id, attempt.token) == (1, AttemptOutcome.RETRIED, "w1",
                                                                                  lease.token)
    assert attempt.started_at == lease.task.started_at == clock.now()
    assert attempt.finished_at == clock.now() + 0.25  # the claim's time plus the duration the worker measured
    assert (attempt.error, attempt.delay) == ("ValueError: boom", 10.0)
    assert attempt.traceback is not None and attempt.traceback.endswith("ValueError: boom")

    clock.advance(11)
    await backend.promote_due(10)
    again = await claim(backend)
    assert again.task.history == (attempt,)  # the claim brings it, so the next settle keeps it
    await backend.settle([Settlement(again, outcome.succeeded(again.task, 1))])
    done = await stored(backend, task.id)
    assert (done.status, done.attempts, done.history) == (TaskStatus.SUCCEEDED, 2, (attempt,))


async def test_a_dead_task_keeps_each_failed_attempt(backend: Backend, make_task: MakeTask, clock: FakeClock) -> None:
    task = make_task(max_attempts=3)
    await backend.enqueue([task])
    for _ in range(3):
        await fail(backend, await claim(backend))
        clock.advance(100)
        await backend.promote_due(10)

    dead = await stored(backend, task.id)
    assert dead.status is TaskStatus.DEAD
    assert [(a.number, a.outcome, a.delay) for a in dead.history] == [
        (1, AttemptOutcome.RETRIED, 10.0), (2, AttemptOutcome.RETRIED, 20.0), (3, AttemptOutcome.DEAD, None)]


async def test_the_history_keeps_the_last_attempts(backend: Backend, make_task: MakeTask, clock: FakeClock) -> None:
    task = make_task(max_attempts=HISTORY_LIMIT + 5)
    await backend.enqueue([task])
    for _ in range(HISTORY_LIMIT + 5):
        await fail(backend, await claim(backend))
        clock.advance(200)
        await backend.promote_due(10)

    history = (await stored(backend, task.id)).history
    assert [a.number for a in history] == list(range(6, HISTORY_LIMIT + 6))
    assert history[-1].outcome is AttemptOutcome.DEAD


async def test_a_lease_the_poller_recovers_is_kept_as_lost(backend: Backend, registry: Registry,
                                                           make_task: MakeTask, clock: FakeClock) -> None:
    task = make_task(max_attempts=3)
    await backend.enqueue([task])
    lease = await claim(backend)
    clock.advance(LEASE + 5)
    tasks = TaskService(backend, backend, registry, clock)
    poller = Poller(backend, backend, ScheduleService(backend, tasks, registry, lambda spec, at: at),
                    PollerConfig(lease_seconds=LEASE))

    assert (await poller.tick()).recovered == 1

    [attempt] = (await stored(backend, task.id)).history
    assert (attempt.number, attempt.outcome, attempt.worker_id, attempt.token) == (1, AttemptOutcome.LOST, "w1", None)
    assert attempt.started_at == lease.task.started_at
    assert attempt.finished_at == clock.now()  # when the poller took the lease over
    assert attempt.error == "lease expired: worker lost or hung"


async def test_released_and_cancelled_attempts_are_kept(backend: Backend, make_task: MakeTask) -> None:
    task = make_task(max_attempts=3)
    await backend.enqueue([task])
    lease = await claim(backend)
    released = outcome.ended(lease.task, outcome.released(lease.task), lease.token, seconds=1.0)
    await backend.settle([Settlement(lease, released)])
    lease = await claim(backend)
    cancelled = outcome.ended(lease.task, outcome.cancelled(lease.task), lease.token, seconds=2.0)
    await backend.settle([Settlement(lease, cancelled)])

    history = (await stored(backend, task.id)).history
    assert [(a.number, a.outcome, a.token) for a in history] == [
        (1, AttemptOutcome.RELEASED, history[0].token), (2, AttemptOutcome.CANCELLED, lease.token)]


async def test_the_worker_records_a_failed_attempt(backend: Backend, registry: Registry, clock: FakeClock) -> None:
    """End to end: the worker's runtime closes the attempt with its lease's token and measured duration."""
    calls: list[int] = []

    def once_broken(payload: dict[str, Any]) -> str:
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("boom")
        return "ok"

    registry.register(TaskSpec("once_broken", once_broken, max_attempts=3, retry=POLICY))
    service = TaskService(backend, backend, registry, clock)
    task = (await service.submit(SubmitRequest("once_broken", {}))).task
    config = WorkerConfig(worker_id="w", idle_wait=0.05, budget=10, grace=5)

    await asyncio.wait_for(Invocation(backend, registry, config).run(), 20)
    clock.advance(11)
    await backend.promote_due(10)
    await asyncio.wait_for(Invocation(backend, registry, config).run(), 20)

    done = await service.get(task.id)
    [attempt] = done.history
    assert (done.status, attempt.outcome, attempt.worker_id, attempt.delay) == (
        TaskStatus.SUCCEEDED, AttemptOutcome.RETRIED, "w", 10.0)
    assert attempt.token is not None and attempt.error == "ValueError: boom"
    assert attempt.traceback is not None and "raise ValueError" in attempt.traceback
    assert attempt.started_at is not None and attempt.finished_at is not None
    assert attempt.started_at <= attempt.finished_at < attempt.started_at + 5

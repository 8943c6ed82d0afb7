"""The per-tenant cap, part of every backend's ports: a tenant's waiting (queued or scheduled) tasks
(TaskStore.count_waiting), and an enqueue within a cap (Broker.enqueue(tasks, cap=N))."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from hexq.core.errors import QueueFull
from hexq.core.model import Settlement, Task, TaskStatus
from hexq.core.ports import Backend


async def test_queued_and_scheduled_tasks_count_per_tenant(backend: Backend, make_task: Callable[..., Task]) -> None:
    await backend.enqueue([make_task(tenant="acme"), make_task(tenant="acme", status=TaskStatus.SCHEDULED),
                           make_task(tenant="globex")])

    assert [await backend.count_waiting(t) for t in ("acme", "globex", "nobody")] == [2, 1, 0]


async def test_claimed_and_cancelled_tasks_stop_counting(backend: Backend, make_task: Callable[..., Task]) -> None:
    first, second = make_task(tenant="acme"), make_task(tenant="acme")
    await backend.enqueue([first, second])

    (claimed,) = await backend.claim(["default"], 1, lease_seconds=30, worker_id="w")
    assert await backend.count_waiting("acme") == 1
    waiting = second if claimed.task.id == first.id else first  # SQS need not hand out the older one first
    assert await backend.transition(waiting.moved_to(TaskStatus.CANCELLED), expected=TaskStatus.QUEUED) is not None
    assert await backend.count_waiting("acme") == 0


async def test_a_released_or_retried_task_counts_again_and_a_promotion_changes_nothing(
        backend: Backend, make_task: Callable[..., Task]) -> None:
    await backend.enqueue([make_task(tenant="acme"), make_task(tenant="acme")])
    first, second = await backend.claim(["default"], 2, lease_seconds=30, worker_id="w")
    assert await backend.count_waiting("acme") == 0

    settled = await backend.settle([
        Settlement(first, first.task.moved_to(TaskStatus.QUEUED, worker_id=None)),
        Settlement(second, second.task.moved_to(TaskStatus.FAILED).moved_to(TaskStatus.SCHEDULED,
                                                                              run_at=second.task.created_at))])
    assert settled == [True, True]
    assert await backend.count_waiting("acme") == 2
    await backend.promote_due(10)
    assert await backend.count_waiting("acme") == 2


async def test_enqueue_within_stores_up_to_the_cap_and_then_refuses(
        backend: Backend, make_task: Callable[..., Task]) -> None:
    await backend.enqueue([make_task(tenant="acme"), make_task(tenant="acme")], cap=3)

    with pytest.raises(QueueFull) as refused:
        await backend.enqueue([make_task(tenant="acme"), make_task(tenant="acme")], cap=3)
    assert (refused.value.tenant, refused.value.limit) == ("acme", 3)
    assert await backend.count_waiting("acme") == 2  # the refused bulk stored nothing
    await backend.enqueue([make_task(tenant="acme"), make_task(tenant="globex")], cap=3)
    assert [await backend.count_waiting(t) for t in ("acme", "globex")] == [3, 1]


async def test_an_idempotent_resubmit_at_the_cap_returns_the_earlier_task(
        backend: Backend, make_task: Callable[..., Task]) -> None:
    original = make_task(tenant="acme", idempotency_key="k")
    await backend.enqueue([original], cap=1)

    again = await backend.enqueue([make_task(tenant="acme", idempotency_key="k")], cap=1)
    assert [task.id for task in again] == [original.id]
    assert await backend.count_waiting("acme") == 1


async def test_concurrent_submits_cannot_overshoot_the_cap(backend: Backend, make_task: Callable[..., Task]) -> None:
    await backend.count_waiting("acme")  # a first command alone: redis-py's cluster client can fail a burst of them

    async def submit() -> bool:
        try:
            await backend.enqueue([make_task(tenant="acme")], cap=5)
        except QueueFull:
            return False
        return True

    stored = await asyncio.gather(*(submit() for _ in range(20)))
    assert (sum(stored), await backend.count_waiting("acme")) == (5, 5)

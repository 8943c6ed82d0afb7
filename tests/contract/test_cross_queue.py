"""What one submit promises across queues: a bulk submit over a tenant's cap is refused whole, and an idempotency
key reused for another queue is refused. Every backend that keeps a deployment's tasks in one atomic store gives
both; a Redis deployment spread over shards (redis_sharded) checks each shard on its own (capability gaps)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hexq.core.errors import IdempotencyMismatch, QueueFull
from hexq.core.model import Task, TaskQuery
from hexq.core.ports import Backend

MakeTask = Callable[..., Task]


async def test_a_bulk_submit_over_the_cap_is_refused_whole_across_queues(backend: Backend,
                                                                          make_task: MakeTask) -> None:
    tasks = [make_task(queue=queue, tenant="acme") for queue in ("a", "b", "b")]
    with pytest.raises(QueueFull):
        await backend.enqueue(tasks, cap=2)
    assert await backend.count_waiting("acme") == 0
    assert (await backend.query(TaskQuery(limit=10))).items == []


async def test_an_idempotency_key_reused_for_another_queue_is_refused(backend: Backend, make_task: MakeTask) -> None:
    first = make_task(queue="a", tenant="acme", idempotency_key="order-1")
    await backend.enqueue([first])
    with pytest.raises(IdempotencyMismatch):
        await backend.enqueue([make_task(queue="b", tenant="acme", idempotency_key="order-1")])
    assert [task.id for task in (await backend.query(TaskQuery(limit=10))).items] == [first.id]

"""QueueControl contract: a paused queue's tasks are not claimed, everything else goes on, resume wakes claimers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from hexq.core import outcome
from hexq.core.clock import FakeClock
from hexq.core.model import Lease, Settlement, Task, TaskStatus
from hexq.core.ports import Backend, SettleAndClaim
from hexq.core.retry import RetryPolicy

LEASE = 30.0
MakeTask = Callable[..., Task]


async def claim(backend: Backend, queues: tuple[str, ...] = ("default", "emails"), n: int = 10, *,
                wait: float = 0.0) -> list[Lease]:
    return await backend.claim(queues, n, lease_seconds=LEASE, worker_id="w1", wait=wait)


def queues_of(leases: list[Lease]) -> list[str]:
    return sorted(lease.task.queue for lease in leases)


async def test_a_paused_queue_is_not_claimed_while_others_are(backend: Backend, make_task: MakeTask) -> None:
    await backend.enqueue([make_task(queue="emails"), make_task(queue="default"), make_task(queue="emails")])

    assert await backend.pause("emails") is True

    assert queues_of(await claim(backend)) == ["default"]
    assert await claim(backend) == []


async def test_submits_are_accepted_while_paused(backend: Backend, make_task: MakeTask) -> None:
    await backend.pause("emails")

    stored = await backend.enqueue([make_task(queue="emails"), make_task(queue="emails")])

    assert [task.status for task in stored] == [TaskStatus.QUEUED] * 2
    stats = await backend.stats()
    assert stats.by_status[TaskStatus.QUEUED] == 2 and sum(stats.queued["emails"].values()) == 2
    assert stats.paused == frozenset({"emails"})


async def test_resume_makes_the_tasks_claimable_at_once(backend: Backend, make_task: MakeTask) -> None:
    await backend.pause("emails")
    await backend.enqueue([make_task(queue="emails"), make_task(queue="emails")])
    assert await claim(backend) == []

    assert await backend.resume("emails") is True

    assert queues_of(await claim(backend)) == ["emails", "emails"]


async def test_delayed_tasks_are_promoted_while_paused_and_wait_for_the_resume(backend: Backend, make_task: MakeTask,
                                                                               clock: FakeClock) -> None:
    await backend.pause("emails")
    [task] = await backend.enqueue([make_task(queue="emails", delay=5.0)])
    clock.advance(6)
    await backend.promote_due(10)

    assert await claim(backend) == []
    assert (stored := await backend.get(task.id)) is not None and stored.status is TaskStatus.QUEUED
    await backend.resume("emails")
    assert [lease.task.id for lease in await claim(backend)] == [task.id]


async def test_settle_and_claim_respects_a_pause(backend: Backend, make_task: MakeTask) -> None:
    if not isinstance(backend, SettleAndClaim):
        pytest.xfail(f"optional port: {backend.name} has no SettleAndClaim")
    await backend.enqueue([make_task(queue="default")])
    [lease] = await claim(backend)
    await backend.pause("emails")
    await backend.enqueue([make_task(queue="emails"), make_task(queue="default")])

    applied, leases = await backend.settle_and_claim([Settlement(lease, outcome.succeeded(lease.task, None))],
                                                     ["default", "emails"], 10, lease_seconds=LEASE, worker_id="w2")

    assert applied == [True]
    assert queues_of(leases) == ["default"]


async def test_pause_and_resume_are_idempotent(backend: Backend) -> None:
    assert await backend.resume("emails") is False  # never paused
    assert await backend.pause("emails") is True
    assert await backend.pause("emails") is False
    assert await backend.paused() == frozenset({"emails"})
    assert await backend.resume("emails") is True
    assert await backend.resume("emails") is False
    assert await backend.paused() == frozenset()


async def test_paused_lists_every_paused_queue_even_one_with_no_task(backend: Backend) -> None:
    await backend.pause("never-used")
    await backend.pause("emails")

    assert await backend.paused() == frozenset({"never-used", "emails"})
    assert (await backend.stats()).paused == frozenset({"never-used", "emails"})


async def test_the_backlog_leaves_paused_queues_out(backend: Backend, make_task: MakeTask) -> None:
    await backend.enqueue([make_task(queue="emails"), make_task(queue="default")])
    await backend.pause("emails")

    assert await backend.backlog() == 1
    await backend.resume("emails")
    assert await backend.backlog() == 2


async def test_cancel_and_retry_go_on_while_paused(backend: Backend, make_task: MakeTask, clock: FakeClock) -> None:
    [task] = await backend.enqueue([make_task(queue="emails", max_attempts=3)])
    [lease] = await claim(backend)
    await backend.pause("emails")

    assert await backend.request_cancel(task.id) is not None  # a running task of a paused queue can be cancelled
    retry = outcome.failed(lease.task, "boom", RetryPolicy(base=1, jitter=0))  # ...and its failure is retried as usual
    assert await backend.settle([Settlement(lease, retry)]) == [True]
    clock.advance(3600)
    await backend.promote_due(10)
    assert (stored := await backend.get(task.id)) is not None and stored.status is TaskStatus.QUEUED
    assert await claim(backend) == []


async def test_a_waiting_claim_does_not_return_a_paused_queues_tasks(backend: Backend, make_task: MakeTask) -> None:
    await backend.pause("emails")

    async def submit_soon() -> None:
        await asyncio.sleep(0.05)
        await backend.enqueue([make_task(queue="emails")])

    producer = asyncio.create_task(submit_soon())
    leases = await claim(backend, ("emails",), wait=0.5)
    await producer

    assert leases == []


async def test_resume_wakes_a_waiting_claimer(backend: Backend, make_task: MakeTask) -> None:
    await backend.pause("emails")
    [task] = await backend.enqueue([make_task(queue="emails")])

    async def resume_soon() -> float:
        await asyncio.sleep(0.2)
        await backend.resume("emails")
        return time.monotonic()

    resumer = asyncio.create_task(resume_soon())
    leases = await claim(backend, ("emails",), wait=10.0)
    woke = time.monotonic() - await resumer

    assert [lease.task.id for lease in leases] == [task.id]
    assert woke < 2.0  # a claimer waits up to 10 s: it was woken, not timed out (AWS: its cache is <= 1 s)

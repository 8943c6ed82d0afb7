"""Stats.depth and Stats.oldest_age: the state of every queue and priority, read from the backend when asked."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pytest

from hexq.core import outcome
from hexq.core.clock import FakeClock
from hexq.core.model import STATES, Lease, Priority, Settlement, Stats, Task, TaskStatus
from hexq.core.ports import Backend
from hexq.core.retry import RetryPolicy
from hexq.core.services import TaskService

MakeTask = Callable[..., Task]
LEASE = 30.0
N, H, L = Priority.NORMAL, Priority.HIGH, Priority.LOW


async def claim(backend: Backend, queue: str = "default", n: int = 1) -> list[Lease]:
    return await backend.claim([queue], n, lease_seconds=LEASE, worker_id="w1")


async def fail(backend: Backend, lease: Lease) -> None:
    """Settle a failed attempt: dead if it was the last one, else a retry due in 10 s."""
    failed = outcome.failed(lease.task, "boom", RetryPolicy(base=10, cap=10, jitter=0))
    assert await backend.settle([Settlement(lease, failed)]) == [True]


def nonzero(depth: Mapping[tuple[str, Priority, str], int]) -> dict[tuple[str, Priority, str], int]:
    return {place: n for place, n in depth.items() if n}


def consistent(stats: Stats) -> None:
    """depth agrees with the counts by status and the queued depth the poller reads."""
    for state in STATES:
        assert sum(n for (_, _, s), n in stats.depth.items() if s == state) == stats.by_status[TaskStatus(state)]
    queued = {(q, p, "queued"): n for q, levels in stats.queued.items() for p, n in levels.items() if n}
    assert queued == {place: n for place, n in nonzero(stats.depth).items() if place[2] == "queued"}


async def test_depth_by_queue_priority_and_state(backend: Backend, make_task: MakeTask) -> None:
    doomed = make_task(queue="emails", max_attempts=1)
    await backend.enqueue([doomed])
    [lease] = await claim(backend, "emails")
    await fail(backend, lease)
    await backend.enqueue([make_task(), make_task(), make_task(priority=H), make_task(queue="emails", priority=L),
                           make_task(delay=60)])
    [running] = await claim(backend)
    assert running.task.priority is H

    stats = await backend.stats()

    assert nonzero(stats.depth) == {("default", N, "queued"): 2, ("default", H, "running"): 1,
                                    ("default", N, "scheduled"): 1, ("emails", L, "queued"): 1,
                                    ("emails", N, "dead"): 1}
    consistent(stats)
    assert set(stats.oldest_age) >= {("default", N), ("emails", L)}


async def test_depth_follows_every_move(backend: Backend, service: TaskService, make_task: MakeTask,
                                        clock: FakeClock) -> None:
    later, retried, doomed = make_task(delay=60), make_task(max_attempts=2), make_task(max_attempts=1, priority=H)
    cancelled = make_task(delay=60, queue="emails")
    await backend.enqueue([later, retried, doomed, cancelled])
    leases = await claim(backend, n=2)  # doomed (high) first, then retried
    for lease in leases:
        await fail(backend, lease)  # retried: scheduled again in 10 s; doomed: dead
    await service.cancel(cancelled.id)
    assert nonzero((await backend.stats()).depth) == {("default", N, "scheduled"): 2, ("default", H, "dead"): 1}

    clock.advance(60)
    assert await backend.promote_due(10) == 2
    await service.replay([doomed.id])
    stats = await backend.stats()

    assert nonzero(stats.depth) == {("default", N, "queued"): 2, ("default", H, "queued"): 1}
    consistent(stats)
    [lease] = await claim(backend)
    clock.advance(LEASE + 1)
    [recovered] = await backend.reclaim_expired(10, LEASE)
    await fail(backend, recovered)  # its second attempt (the replay kept the first): dead
    assert nonzero((await backend.stats()).depth) == {("default", N, "queued"): 2, ("default", H, "dead"): 1}


async def test_oldest_age_counts_from_when_a_task_became_eligible(backend: Backend, make_task: MakeTask,
                                                                  clock: FakeClock) -> None:
    delayed = make_task(delay=10)
    await backend.enqueue([delayed])
    clock.advance(2)
    await backend.enqueue([make_task()])  # queued at once: eligible 8 s before the delayed one
    clock.advance(3)
    await backend.enqueue([make_task(priority=H, queue="emails")])
    clock.advance(7)
    assert await backend.promote_due(10) == 1

    stats = await backend.stats()

    assert stats.oldest_age == {("default", N): pytest.approx(10), ("emails", H): pytest.approx(7)}
    [lease] = await claim(backend)  # the delayed one where FIFO holds (aws: either)
    clock.advance(1)
    left = 11 if lease.task.id == delayed.id else 3  # eligible at +2, or at +10 (now is +13)
    assert (await backend.stats()).oldest_age == {("default", N): pytest.approx(left), ("emails", H): pytest.approx(8)}


async def test_an_empty_backend_has_no_depth_and_no_age(backend: Backend) -> None:
    stats = await backend.stats()
    assert nonzero(stats.depth) == {} and stats.oldest_age == {}

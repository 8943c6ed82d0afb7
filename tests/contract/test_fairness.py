"""Fair queues (hexq.core.fairness): within one priority level, tenants take turns; FIFO within a tenant.

Tenants whose turns tie may come in either order (Redis breaks a tie by task id), so the tests look at
rounds: the tasks claimed between two turns of the clock, as sets of tenants.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from redis_server import LinkedClock, fresh_backend

from hexq.adapters.memory import MemoryBackend
from hexq.adapters.sqlite import SQLiteBackend
from hexq.core import outcome
from hexq.core.clock import FakeClock
from hexq.core.model import Lease, Priority, Settlement, Task, TaskStatus
from hexq.core.ports import Backend

LEASE = 30.0
MakeTask = Callable[..., Task]


async def claim(backend: Backend, n: int = 1) -> list[Lease]:
    return await backend.claim(["default"], n, lease_seconds=LEASE, worker_id="w1")


async def claim_tenants(backend: Backend, n: int) -> list[Task]:
    """Claim one at a time, n times (fewer if the queue runs dry): the claimed tasks, in claim order."""
    tasks: list[Task] = []
    for _ in range(n):
        leases = await claim(backend)
        if not leases:
            break
        tasks.append(leases[0].task)
    return tasks


def rounds(tasks: list[Task], size: int) -> list[list[str]]:
    """The claimed tasks' tenants in consecutive groups of `size`, each sorted (tie order is free)."""
    return [sorted(t.tenant for t in tasks[i:i + size]) for i in range(0, len(tasks), size)]


def submitted(tenant: str, make_task: MakeTask, n: int, **fields: object) -> list[Task]:
    return [make_task(tenant=tenant, payload={"i": i}, **fields) for i in range(n)]


def assert_fifo_per_tenant(claimed: list[Task], *batches: list[Task]) -> None:
    for batch in batches:
        ids = {t.id for t in batch}
        assert [t.id for t in claimed if t.id in ids] == [t.id for t in batch]


# -- round robin, FIFO within a tenant ---------------------------------------------------------------
async def test_tenants_take_turns_within_a_priority_level(backend: Backend, make_task: MakeTask) -> None:
    a, b, c = submitted("a", make_task, 6), submitted("b", make_task, 3), submitted("c", make_task, 3)
    for batch in (a, b, c):  # a's backlog first: b and c do not wait behind it
        await backend.enqueue(batch)

    claimed = await claim_tenants(backend, 20)

    assert rounds(claimed, 3) == [["a", "b", "c"]] * 3 + [["a", "a", "a"]]
    assert_fifo_per_tenant(claimed, a, b, c)


async def test_a_tenant_arriving_behind_a_backlog_is_served_next(backend: Backend, make_task: MakeTask) -> None:
    a = submitted("a", make_task, 10)
    await backend.enqueue(a)
    first = await claim_tenants(backend, 3)
    b = submitted("b", make_task, 2)
    await backend.enqueue(b)

    claimed = await claim_tenants(backend, 20)

    assert [t.id for t in first] == [t.id for t in a[:3]]
    assert claimed[0].id == b[0].id  # it starts at the clock: the turn just served
    assert rounds(claimed[1:3], 2) == [["a", "b"]]
    assert_fifo_per_tenant(first + claimed, a, b)


async def test_one_tenant_alone_is_served_in_submit_order(backend: Backend, make_task: MakeTask) -> None:
    tasks = submitted("solo", make_task, 30)
    await backend.enqueue(tasks[:10])
    head = await claim_tenants(backend, 4)
    await backend.enqueue(tasks[10:])

    claimed = head + [lease.task for lease in await claim(backend, 100)]

    assert [t.id for t in claimed] == [t.id for t in tasks]


async def test_a_batch_claim_takes_turns_too(backend: Backend, make_task: MakeTask) -> None:
    a, b, more = submitted("a", make_task, 8), submitted("b", make_task, 2), submitted("a", make_task, 8)
    for tasks in (a, b, more):
        await backend.enqueue(tasks)

    batch = [lease.task for lease in await claim(backend, 4)]

    assert sorted(t.id for t in batch) == sorted(t.id for t in (a[0], a[1], *b))


# -- strict priority across levels ---------------------------------------------------------------------
async def test_priority_stays_strict_across_levels_with_several_tenants(backend: Backend,
                                                                        make_task: MakeTask) -> None:
    low_a = submitted("a", make_task, 4, priority=Priority.LOW)
    high_b = submitted("b", make_task, 3, priority=Priority.HIGH)
    high_a = submitted("a", make_task, 3, priority=Priority.HIGH)
    critical_c = submitted("c", make_task, 1, priority=Priority.CRITICAL)
    for batch in (low_a, high_b, high_a, critical_c):
        await backend.enqueue(batch)

    claimed = await claim_tenants(backend, 20)

    assert [t.priority for t in claimed] == [Priority.CRITICAL] + [Priority.HIGH] * 6 + [Priority.LOW] * 4
    assert rounds(claimed[1:7], 2) == [["a", "b"]] * 3  # the high level's tenants take turns
    assert_fifo_per_tenant(claimed, low_a, high_b, high_a)


async def test_levels_keep_their_own_turns(backend: Backend, make_task: MakeTask) -> None:
    """A backlog in one level gives a tenant no place in another: b's high task is not behind a's normal ones."""
    await backend.enqueue(submitted("a", make_task, 5))
    high = make_task(tenant="b", priority=Priority.HIGH)
    await backend.enqueue([high])

    assert [lease.task.id for lease in await claim(backend)] == [high.id]


# -- what moves tasks into and out of the ready order ------------------------------------------------------
async def test_cancelling_a_queued_task_keeps_the_others_turns(backend: Backend, make_task: MakeTask) -> None:
    a, b = submitted("a", make_task, 4), submitted("b", make_task, 4)
    await backend.enqueue(a)
    await backend.enqueue(b)
    stored = await backend.get(a[1].id)
    assert stored is not None
    assert await backend.transition(outcome.cancelled(stored), TaskStatus.QUEUED) is not None

    claimed = await claim_tenants(backend, 20)

    assert a[1].id not in {t.id for t in claimed}
    assert rounds(claimed[:2], 2) == [["a", "b"]]
    assert_fifo_per_tenant(claimed, [a[0], *a[2:]], b)


async def test_paused_queue_resumes_with_turns(backend: Backend, make_task: MakeTask) -> None:
    await backend.pause("default")
    a, b = submitted("a", make_task, 6), submitted("b", make_task, 3)
    await backend.enqueue(a)
    await backend.enqueue(b)
    assert await claim(backend) == []
    await backend.resume("default")

    claimed = await claim_tenants(backend, 20)

    assert rounds(claimed, 2) == [["a", "b"]] * 3 + [["a", "a"], ["a"]]


async def test_promoted_tasks_take_turns_from_when_they_are_due(backend: Backend, make_task: MakeTask,
                                                                 clock: FakeClock) -> None:
    later = submitted("b", make_task, 3, status=TaskStatus.SCHEDULED, run_at=clock.now() + 10)
    await backend.enqueue(later)  # submitted first, due later
    a = submitted("a", make_task, 8)
    await backend.enqueue(a)
    first = await claim_tenants(backend, 2)
    clock.advance(10)
    await backend.promote_due(limit=10)

    claimed = await claim_tenants(backend, 20)

    assert [t.tenant for t in first] == ["a", "a"]
    assert claimed[0].id == later[0].id  # due now: it starts at the clock, the turn just served
    assert rounds(claimed[1:5], 2) == [["a", "b"]] * 2
    assert_fifo_per_tenant(first + claimed, a, later)


async def test_a_released_task_keeps_its_place(backend: Backend, make_task: MakeTask) -> None:
    a, b = submitted("a", make_task, 4), submitted("b", make_task, 4)
    await backend.enqueue(a)
    [lease, _] = await claim(backend, 2)
    await backend.enqueue(b)
    assert await backend.settle([Settlement(lease, outcome.released(lease.task))]) == [True]

    claimed = await claim_tenants(backend, 20)

    assert claimed[0].id == lease.task.id == a[0].id  # back at the front, not behind b's turns
    assert_fifo_per_tenant(claimed, [a[0], *a[2:]], b)


async def test_a_reclaimed_lease_does_not_disturb_the_turns(backend: Backend, make_task: MakeTask,
                                                            clock: FakeClock) -> None:
    a, b = submitted("a", make_task, 4), submitted("b", make_task, 4)
    await backend.enqueue(a)
    await backend.enqueue(b)
    first = await claim_tenants(backend, 2)
    clock.advance(LEASE + 1)
    [expired, _] = await backend.reclaim_expired(10, LEASE)
    assert await backend.settle([Settlement(expired, outcome.lost(expired.task))]) == [True]  # a retry, later
    clock.advance(3600)

    claimed = await claim_tenants(backend, 20)

    assert rounds(first, 2) == [["a", "b"]]
    assert claimed[0].id == expired.task.id  # the retry kept its place at the front
    assert rounds(claimed[1:7], 2) == [["a", "b"]] * 3


# -- weights -------------------------------------------------------------------------------------------
WEIGHTS = {"heavy": 3}


@pytest.fixture(params=["memory", "sqlite", pytest.param("redis", marks=pytest.mark.redis),
                        pytest.param("redis_cluster", marks=pytest.mark.redis),
                        pytest.param("redis_sharded", marks=pytest.mark.redis)])
async def weighted(request: pytest.FixtureRequest, clock: LinkedClock, tmp_path: Path) -> AsyncIterator[Backend]:
    """Each backend that has fair queues, built with WEIGHTS (aws has no fair queues: see the capability table)."""
    if request.param == "memory":
        yield MemoryBackend(clock, weights=WEIGHTS)
    elif request.param == "sqlite":
        backend = SQLiteBackend(str(tmp_path / "hexq.db"), clock, weights=WEIGHTS)
        yield backend
        await backend.close()
    else:
        url = request.getfixturevalue("redis_url" if request.param == "redis" else "redis_cluster_url")
        url += "?shards=per-queue" if request.param == "redis_sharded" else ""
        async with fresh_backend(url, clock, weights=WEIGHTS) as redis_backend:
            yield redis_backend


async def test_a_tenant_of_weight_w_gets_w_turns_per_round(weighted: Backend, make_task: MakeTask) -> None:
    heavy, light = submitted("heavy", make_task, 9), submitted("light", make_task, 3)
    await weighted.enqueue(heavy)
    await weighted.enqueue(light)

    claimed = await claim_tenants(weighted, 20)

    assert rounds(claimed, 4) == [["heavy", "heavy", "heavy", "light"]] * 3
    assert_fifo_per_tenant(claimed, heavy, light)


async def test_weights_apply_to_promoted_tasks(weighted: Backend, make_task: MakeTask, clock: FakeClock) -> None:
    heavy = submitted("heavy", make_task, 6, status=TaskStatus.SCHEDULED, run_at=clock.now() + 5)
    light = submitted("light", make_task, 2, status=TaskStatus.SCHEDULED, run_at=clock.now() + 5)
    await weighted.enqueue(heavy)
    await weighted.enqueue(light)
    clock.advance(5)

    claimed = await claim_tenants(weighted, 20)

    assert rounds(claimed, 4) == [["heavy", "heavy", "heavy", "light"]] * 2

"""SettleAndClaim, the optional port (core.ports): settle a batch, then claim without waiting, in one operation.

Every test runs on every backend. A backend that does not implement the port ends each test as an xfail
that names it (the run's summary lists them: `-ra`), so the list of who has it is always current; where
it is implemented, the contract is the one of settle() followed by claim(), the settles applied first.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from hexq.core import outcome
from hexq.core.clock import FakeClock, stamped
from hexq.core.model import Lease, Priority, Settlement, Task, TaskStatus
from hexq.core.ports import Backend, SettleAndClaim

LEASE = 30.0
MakeTask = Callable[..., Task]


def both(backend: Backend) -> SettleAndClaim:
    if not isinstance(backend, SettleAndClaim):
        pytest.xfail(f"optional port: {backend.name} has no SettleAndClaim (its workers settle and claim in two calls)")
    return backend


async def settle_and_claim(backend: Backend, settlements: list[Settlement], n: int,
                           queues: tuple[str, ...] = ("default",)) -> tuple[list[bool], list[Lease]]:
    return await both(backend).settle_and_claim(settlements, queues, n, lease_seconds=LEASE, worker_id="w2")


async def claim(backend: Backend, n: int) -> list[Lease]:
    return await backend.claim(["default"], n, lease_seconds=LEASE, worker_id="w1")


def succeeded(lease: Lease) -> Settlement:
    return Settlement(lease, outcome.succeeded(lease.task, {"id": lease.task.id}))


async def test_settles_then_claims_the_next_tasks(backend: Backend, make_task: MakeTask, clock: FakeClock) -> None:
    both(backend)
    tasks = [make_task(payload={"i": i}) for i in range(5)]
    await backend.enqueue(tasks)
    first, second = await claim(backend, 2)
    clock.advance(2)

    applied, leases = await settle_and_claim(backend, [succeeded(first), succeeded(second)], 2)

    assert applied == [True, True]
    for lease in (first, second):  # stored as settle() stores them: finished by the backend's clock
        assert await backend.get(lease.task.id) == stamped(outcome.succeeded(lease.task, {"id": lease.task.id}),
                                                          clock.now())
    assert [lease.task.id for lease in leases] == [tasks[2].id, tasks[3].id]
    for lease in leases:  # leased as claim() leases them
        assert lease.task.status is TaskStatus.RUNNING
        assert (lease.task.attempts, lease.task.started_at, lease.task.worker_id) == (1, clock.now(), "w2")
        assert lease.expires_at == clock.now() + LEASE
        assert await backend.get(lease.task.id) == lease.task
    assert len({first.token, second.token, *(lease.token for lease in leases)}) == 4


async def test_the_claim_sees_what_the_settles_did(backend: Backend, make_task: MakeTask) -> None:
    both(backend)
    task = make_task()
    await backend.enqueue([task])
    [lease] = await claim(backend, 1)

    # Released and claimed again in the same call: the settle came first.
    applied, [again] = await settle_and_claim(backend, [Settlement(lease, outcome.released(lease.task))], 1)

    assert applied == [True]
    assert (again.task.id, again.task.attempts) == (task.id, 2)
    assert again.token != lease.token
    assert await backend.settle([succeeded(lease)]) == [False]  # the old lease is fenced out


async def test_a_stale_settlement_is_refused_and_the_claim_still_runs(backend: Backend, make_task: MakeTask,
                                                                     clock: FakeClock) -> None:
    both(backend)
    await backend.enqueue([make_task(), make_task()])
    [lost] = await claim(backend, 1)
    clock.advance(LEASE + 1)
    [taken] = await backend.reclaim_expired(limit=10, lease_seconds=LEASE)

    applied, leases = await settle_and_claim(backend, [succeeded(lost)], 5)

    assert applied == [False]
    assert await backend.get(lost.task.id) == taken.task  # untouched: still running under the new lease
    assert len(leases) == 1 and leases[0].task.id != lost.task.id


async def test_no_settlements_is_a_claim_and_n_zero_is_a_settle(backend: Backend, make_task: MakeTask) -> None:
    both(backend)
    await backend.enqueue([make_task(), make_task()])

    applied, leases = await settle_and_claim(backend, [], 1)
    assert (applied, len(leases)) == ([], 1)

    applied, more = await settle_and_claim(backend, [succeeded(leases[0])], 0)
    assert (applied, more) == ([True], [])
    assert (await backend.get(leases[0].task.id)).status is TaskStatus.SUCCEEDED  # type: ignore[union-attr]
    assert await settle_and_claim(backend, [], 0) == ([], [])


async def test_strict_priority_across_the_queue_set_and_only_those_queues(backend: Backend,
                                                                          make_task: MakeTask) -> None:
    both(backend)
    normal, other, urgent = make_task(queue="a"), make_task(queue="c"), make_task(queue="b", priority=Priority.CRITICAL)
    await backend.enqueue([normal, other, urgent])

    _, leases = await settle_and_claim(backend, [], 5, queues=("a", "b"))

    assert [lease.task.id for lease in leases] == [urgent.id, normal.id]


async def test_due_scheduled_tasks_are_claimed_and_an_empty_queue_does_not_wait(
        backend: Backend, make_task: MakeTask, clock: FakeClock) -> None:
    both(backend)
    later = make_task(status=TaskStatus.SCHEDULED, run_at=clock.now() + 10)
    await backend.enqueue([later])

    started = time.monotonic()
    assert await settle_and_claim(backend, [], 1) == ([], [])
    assert time.monotonic() - started < 1.0  # never blocks, whatever the backend's claim wait is

    clock.advance(10)
    _, [lease] = await settle_and_claim(backend, [], 1)
    assert lease.task.id == later.id

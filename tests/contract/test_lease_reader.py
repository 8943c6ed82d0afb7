"""LeaseReader: every backend shows the leases it keeps for running tasks, read-only, soonest expiry first."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hexq.core import outcome
from hexq.core.clock import FakeClock
from hexq.core.model import Lease, Settlement, Task, TaskStatus
from hexq.core.ports import Backend

MakeTask = Callable[..., Task]
LEASE = 30.0


async def claim(backend: Backend, n: int = 1, worker_id: str = "w1") -> list[Lease]:
    return await backend.claim(["default"], n, lease_seconds=LEASE, worker_id=worker_id)


def shown(lease: Lease | None) -> tuple[str, int, float, str | None, TaskStatus, bool] | None:
    if lease is None:
        return None
    return (lease.task.id, lease.token, pytest.approx(lease.expires_at, abs=1e-3), lease.task.worker_id,  # type: ignore[return-value]
            lease.task.status, lease.cancel_requested)


async def test_a_running_task_shows_the_lease_its_worker_holds(backend: Backend, make_task: MakeTask,
                                                                clock: FakeClock) -> None:
    waiting, running = make_task(), make_task()
    await backend.enqueue([running])
    [held] = await claim(backend)
    await backend.enqueue([waiting])

    assert shown(await backend.lease(running.id)) == shown(held)
    assert await backend.lease(waiting.id) is None
    assert await backend.lease("no-such-task") is None
    assert await backend.lease("not a key / part") is None


async def test_a_heartbeat_and_a_reclaim_show_in_the_lease(backend: Backend, make_task: MakeTask,
                                                            clock: FakeClock) -> None:
    await backend.enqueue([make_task()])
    [held] = await claim(backend)
    clock.advance(10)
    [renewed] = await backend.extend([held], LEASE)
    assert renewed is not None
    seen = await backend.lease(held.task.id)
    assert seen is not None and seen.expires_at == pytest.approx(clock.now() + LEASE, abs=1e-3)
    assert seen.token == held.token

    clock.advance(LEASE + 1)
    [taken] = await backend.reclaim_expired(10, LEASE)
    after = await backend.lease(held.task.id)
    assert after is not None and after.token == taken.token != held.token


async def test_a_settled_task_has_no_lease(backend: Backend, make_task: MakeTask) -> None:
    await backend.enqueue([make_task()])
    [held] = await claim(backend)
    assert await backend.settle([Settlement(held, outcome.succeeded(held.task, 1))]) == [True]

    assert await backend.lease(held.task.id) is None
    assert await backend.leases(10) == []


async def test_leases_come_soonest_expiry_first_with_the_cancel_mark(backend: Backend, make_task: MakeTask,
                                                                     clock: FakeClock) -> None:
    await backend.enqueue([make_task() for _ in range(3)])
    first = (await claim(backend, worker_id="w1"))[0]
    clock.advance(5)
    second = (await claim(backend, worker_id="w2"))[0]
    clock.advance(5)
    third = (await claim(backend, worker_id="w3"))[0]
    clock.advance(1)
    await backend.extend([first], LEASE)  # now the latest to expire
    await backend.request_cancel(second.task.id)

    listed = await backend.leases(10)

    assert [(lease.task.id, lease.task.worker_id) for lease in listed] == [
        (second.task.id, "w2"), (third.task.id, "w3"), (first.task.id, "w1")]
    assert [lease.cancel_requested for lease in listed] == [True, False, False]
    assert [lease.task.id for lease in await backend.leases(2)] == [second.task.id, third.task.id]
    assert await backend.leases(0) == []


async def test_leases_of_one_tenant(backend: Backend, make_task: MakeTask) -> None:
    await backend.enqueue([make_task(tenant="acme"), make_task(tenant="other")])
    held = {lease.task.tenant: lease for lease in await claim(backend, 2)}

    assert [lease.task.id for lease in await backend.leases(10, tenant="acme")] == [held["acme"].task.id]
    assert await backend.leases(10, tenant="nobody") == []

"""Back pressure on every backend: what core/backpressure.py reads from TaskStore.stats (the backlog and running
tasks per queue, the finished count, the oldest age) and the refusal and recovery it makes of them. Nothing here
is a new port: every backend that gives honest stats gives back pressure."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hexq.core import outcome
from hexq.core.backpressure import BackPressure, Caps, Policy, Sample
from hexq.core.clock import FakeClock
from hexq.core.errors import Overloaded
from hexq.core.model import Settlement, Task
from hexq.core.ports import Backend
from hexq.core.registry import Registry
from hexq.core.services import SubmitRequest, TaskService


async def test_stats_give_the_drain_meter_what_it_reads(backend: Backend, make_task: Callable[..., Task],
                                                         clock: FakeClock) -> None:
    await backend.enqueue([make_task() for _ in range(3)] + [make_task(queue="other")])
    clock.advance(5)
    before = Sample.of(await backend.stats())
    assert (before.backlog, before.running) == ({"default": 3, "other": 1}, {})
    assert before.oldest_age["default"] >= 5

    leases = await backend.claim(["default"], 2, lease_seconds=30, worker_id="w")
    assert await backend.settle([Settlement(leases[0], outcome.succeeded(leases[0].task, "ok"))]) == [True]
    after = Sample.of(await backend.stats())

    assert (after.backlog, after.running) == ({"default": 1, "other": 1}, {"default": 1})
    assert after.finished == before.finished + 1


async def test_a_capped_queue_refuses_and_accepts_again_once_it_drains(backend: Backend, registry: Registry,
                                                                      clock: FakeClock) -> None:
    pressure = BackPressure(Policy(max_backlog=Caps(3)), backend.stats, clock.monotonic)
    service = TaskService(backend, backend, registry, clock, pressure=pressure)
    for _ in range(3):
        await service.submit(SubmitRequest("echo", {}))
    with pytest.raises(Overloaded) as refused:
        await service.submit(SubmitRequest("echo", {}))
    assert (refused.value.backlog, refused.value.max_backlog) == (3, 3)

    leases = await backend.claim(["default"], 2, lease_seconds=30, worker_id="w")
    assert await backend.settle([Settlement(lease, outcome.succeeded(lease.task, "ok")) for lease in leases])
    clock.advance(1.0)
    [default] = [p for p in await service.pressures() if p.queue == "default"]  # waits for the view's next read

    assert default.load.backlog == 1 and not default.overloaded
    assert default.load.drain_rate == pytest.approx(2.0)  # two left the queue in the second between the reads
    await service.submit(SubmitRequest("echo", {}))

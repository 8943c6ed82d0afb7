"""Cancel a running task: the request is stored with the lease, the worker hears of it at its next
heartbeat, and the task ends cancelled, settled under its lease like every outcome. Every backend."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from hexq.core import outcome
from hexq.core.clock import FakeClock, stamped
from hexq.core.context import current_task
from hexq.core.model import Lease, Settlement, Task, TaskStatus
from hexq.core.ports import Backend
from hexq.core.registry import Registry, TaskSpec
from hexq.core.services import SubmitRequest, TaskService
from hexq.core.worker import Invocation, WorkerConfig

MakeTask = Callable[..., Task]
LEASE = 30.0


async def claim(backend: Backend, n: int = 1) -> list[Lease]:
    return await backend.claim(["default"], n, lease_seconds=LEASE, worker_id="w1")


async def test_only_a_running_task_can_be_asked_to_stop(backend: Backend, make_task: MakeTask,
                                                        clock: FakeClock) -> None:
    queued, scheduled = make_task(), make_task(status=TaskStatus.SCHEDULED, delay=60)
    await backend.enqueue([queued, scheduled])

    assert await backend.request_cancel(queued.id) is None
    assert await backend.request_cancel(scheduled.id) is None
    assert await backend.request_cancel("no-such-task") is None
    [lease] = await claim(backend)
    await backend.settle([Settlement(lease, outcome.succeeded(lease.task, 1))])
    assert await backend.request_cancel(queued.id) is None  # finished
    assert (await backend.get(queued.id)).status is TaskStatus.SUCCEEDED  # type: ignore[union-attr]


async def test_the_next_heartbeat_carries_the_request_and_the_task_ends_cancelled(
        backend: Backend, make_task: MakeTask, clock: FakeClock) -> None:
    await backend.enqueue([make_task(), make_task()])
    target, other = await claim(backend, 2)
    [quiet] = await backend.extend([target], LEASE)
    assert quiet is not None and not quiet.cancel_requested

    marked = await backend.request_cancel(target.task.id)

    assert marked is not None and marked.status is TaskStatus.RUNNING  # it runs until its worker stops it
    renewed = await backend.extend([target, other], LEASE)
    assert [lease is not None and lease.cancel_requested for lease in renewed] == [True, False]
    clock.advance(2)
    ended = outcome.cancelled(target.task)
    assert await backend.settle([Settlement(target, ended)]) == [True]
    stored = await backend.get(target.task.id)
    assert stored == stamped(ended, clock.now())
    assert stored is not None and (stored.status, stored.finished_at) == (TaskStatus.CANCELLED, clock.now())
    assert await backend.settle([Settlement(target, outcome.succeeded(target.task, "late"))]) == [False]


async def test_the_request_ends_with_its_lease(backend: Backend, make_task: MakeTask) -> None:
    await backend.enqueue([make_task(max_attempts=5)])
    [lease] = await claim(backend)
    await backend.request_cancel(lease.task.id)
    await backend.settle([Settlement(lease, outcome.released(lease.task))])  # e.g. the worker shut down first

    [again] = await claim(backend)
    [renewed] = await backend.extend([again], LEASE)
    assert renewed is not None and not renewed.cancel_requested


async def test_a_reclaimed_lease_carries_the_request(backend: Backend, make_task: MakeTask, clock: FakeClock) -> None:
    await backend.enqueue([make_task(), make_task()])
    leases = await claim(backend, 2)
    await backend.request_cancel(leases[0].task.id)
    clock.advance(LEASE + 1)

    reclaimed = {lease.task.id: lease.cancel_requested for lease in await backend.reclaim_expired(10, LEASE)}

    assert reclaimed == {leases[0].task.id: True, leases[1].task.id: False}


# -- end to end: the service asks, the worker stops the handler --------------------------------------
def _registry_with(registry: Registry, started: asyncio.Event) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = {"async": [], "sync": []}
    loop = asyncio.get_running_loop()

    async def forever(payload: dict[str, Any]) -> None:
        seen["async"].append("started")
        started.set()
        await asyncio.sleep(3600)

    def polite(payload: dict[str, Any]) -> str:
        running = current_task()
        seen["sync"].append("started")
        loop.call_soon_threadsafe(started.set)
        deadline = time.monotonic() + 30
        while not running.cancelled and time.monotonic() < deadline:
            running.wait_cancelled(0.01)
        seen["sync"].append("saw the cancel" if running.cancelled else "timed out")
        return "stopped"

    registry.register(TaskSpec("forever", forever, max_attempts=3))
    registry.register(TaskSpec("polite", polite, max_attempts=3))
    return seen


@pytest.mark.parametrize("kind", ["forever", "polite"], ids=["async-handler", "sync-handler"])
async def test_a_running_handler_is_stopped_and_the_task_ends_cancelled(
        backend: Backend, registry: Registry, clock: FakeClock, kind: str) -> None:
    started = asyncio.Event()
    seen = _registry_with(registry, started)
    service = TaskService(backend, backend, registry, clock)
    task = (await service.submit(SubmitRequest(kind, {}))).task
    # A short lease: heartbeats every 0.1 s bring the request quickly (lease expiry runs on the fake clock).
    config = WorkerConfig(worker_id="w", lease_seconds=0.3, idle_wait=0.05, budget=30, grace=5)
    worker = asyncio.create_task(Invocation(backend, registry, config).run())
    await asyncio.wait_for(started.wait(), 20)

    asked = await service.cancel(task.id)

    assert asked.status is TaskStatus.RUNNING
    report = await asyncio.wait_for(worker, 20)
    stored = await service.get(task.id)
    assert (stored.status, stored.attempts, stored.error) == (TaskStatus.CANCELLED, 1, "cancelled while running")
    assert report.claimed == 1 and report.retried == 0
    if kind == "polite":
        assert seen["sync"] == ["started", "saw the cancel"]

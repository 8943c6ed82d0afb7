"""A worker invocation says it is alive in the WorkerRegistry while it runs; it leaves when its process stops
it, and otherwise (an empty queue, a spent budget) is forgotten after BEAT_TTL unless its next invocation beats."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from hexq.adapters.memory import MemoryBackend
from hexq.core.clock import FakeClock
from hexq.core.model import TaskStatus, WorkerInfo
from hexq.core.registry import Registry
from hexq.core.services import SubmitRequest, TaskService
from hexq.core.worker import BEAT_EVERY, BEAT_TTL, Invocation, WorkerConfig


class Recording:
    def __init__(self, backend: MemoryBackend, fail: bool = False) -> None:
        self.backend, self.fail = backend, fail
        self.beats: list[int] = []

    async def beat(self, worker: WorkerInfo, ttl: float) -> None:
        self.beats.append(worker.running)
        if self.fail:
            raise RuntimeError("registry down")
        await self.backend.beat(worker, ttl)

    async def leave(self, worker_id: str) -> None:
        if self.fail:
            raise RuntimeError("registry down")
        await self.backend.leave(worker_id)

    async def workers(self) -> list[WorkerInfo]:
        return await self.backend.workers()


async def run_one_gated_task(backend: MemoryBackend, clock: FakeClock, workers: Recording, *,
                             stop: asyncio.Event | None = None) -> Any:
    gate, started = asyncio.Event(), asyncio.Event()
    registry = Registry()

    @registry.task("gated")
    async def gated(payload: dict[str, Any]) -> str:
        started.set()
        await gate.wait()
        return "ok"

    task = (await TaskService(backend, backend, registry, clock).submit(SubmitRequest("gated", {}))).task
    config = WorkerConfig(worker_id="w1", queues=("default",), idle_wait=0.0, budget=1000.0, grace=1.0)
    run = asyncio.create_task(Invocation(backend, registry, config, clock=clock, workers=workers,  # type: ignore[arg-type]
                                         host_pid=("host-1", 42)).run(stop))
    await started.wait()
    await asyncio.sleep(0.01)  # the first beat has gone out
    clock.advance(BEAT_EVERY)  # the next beat counts the running task
    for _ in range(100):
        if len(workers.beats) >= 2:
            break
        await asyncio.sleep(0.001)
    listed = await backend.workers()
    if stop is not None:
        stop.set()
    gate.set()
    report = await run
    return listed, report, task.id


async def test_beats_while_running_and_leaves_when_stopped(clock: FakeClock) -> None:
    backend = MemoryBackend(clock)
    listed, report, _ = await run_one_gated_task(backend, clock, workers := Recording(backend), stop=asyncio.Event())

    assert [(w.id, w.host, w.pid, w.queues, w.running) for w in listed] == [("w1", "host-1", 42, ("default",), 1)]
    assert len(workers.beats) == 2 and workers.beats[1] == 1  # at the start, then after BEAT_EVERY with the count
    assert report.succeeded == 1
    assert await backend.workers() == []


async def test_an_invocation_that_ends_on_its_own_stays_listed_until_its_beat_expires(clock: FakeClock) -> None:
    backend = MemoryBackend(clock)
    _, report, _ = await run_one_gated_task(backend, clock, Recording(backend))

    assert report.reason == "empty"
    assert [w.id for w in await backend.workers()] == ["w1"]  # the process's next invocation beats on
    clock.advance(BEAT_TTL + 0.001)
    assert await backend.workers() == []


async def test_a_failing_registry_fails_no_task(clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    backend = MemoryBackend(clock)
    _, report, task_id = await run_one_gated_task(backend, clock, Recording(backend, fail=True), stop=asyncio.Event())

    assert report.succeeded == 1 and (await backend.get(task_id)).status is TaskStatus.SUCCEEDED  # type: ignore[union-attr]
    assert "worker beat failed" in caplog.text and "worker leave failed" in caplog.text

"""The pieces that let `hexq serve` meet a submitted task at once (hexq.functions.wake, the poller's wake,
the invokers' warm invocations). Behaviour only: every wait below is a guard against a hang, and where a
quick result is the point, the slow path is made impossibly slow instead (an hour's tick or fallback)."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hexq.adapters.memory import MemoryBackend
from hexq.adapters.sqlite import SQLiteBackend
from hexq.core.clock import FakeClock
from hexq.core.model import Task, TaskStatus
from hexq.core.poller import Poller, PollerConfig
from hexq.core.ports import FinishWaiter
from hexq.core.registry import Registry
from hexq.core.schedules import ScheduleService
from hexq.core.services import SubmitRequest, TaskService
from hexq.functions import wake
from hexq.functions.bootstrap import bootstrap
from hexq.functions.invoker import InProcessInvoker
from hexq.functions.settings import Settings
from hexq.functions.wake import NotifyingBackend, WokenBroker, ring

GUARD = 10.0  # seconds: only a hang gets near it
HOUR = 3600.0


async def new_task(backend: Any, registry: Registry) -> Task:
    service = TaskService(backend, backend, registry, FakeClock())
    return (await service.submit(SubmitRequest("echo", {}))).task


# -- the serve process's backend tells of writes ------------------------------------------------------
async def test_a_write_that_stores_or_moves_a_task_calls_back(registry: Registry, clock: FakeClock) -> None:
    inner = MemoryBackend(clock)
    calls: list[None] = []
    backend = NotifyingBackend(inner, lambda: calls.append(None))
    task = await new_task(backend, registry)
    assert len(calls) == 1
    assert await backend.promote_due(10) == 0 and len(calls) == 1  # nothing moved: nothing to tell
    assert await backend.transition(task.moved_to(TaskStatus.CANCELLED), TaskStatus.RUNNING) is None
    assert len(calls) == 1  # a compare-and-set that did not apply
    assert (await backend.get(task.id)) == (await inner.get(task.id))  # reads go straight through


def test_the_wrapped_backend_has_exactly_the_optional_ports_of_the_inner_one(clock: FakeClock) -> None:
    inner = MemoryBackend(clock)
    backend = NotifyingBackend(inner, lambda: None)
    assert backend.name == "memory"
    assert isinstance(backend, FinishWaiter) == isinstance(inner, FinishWaiter)


# -- a pool process's claim on SQLite waits for the ring ----------------------------------------------
@pytest.fixture
def pipe() -> Iterator[tuple[Any, Any]]:
    reader, writer = multiprocessing.Pipe(duplex=False)
    yield reader, writer
    reader.close()
    if not writer.closed:
        writer.close()


@pytest.fixture
def no_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wake, "FIRST_LOOK", HOUR)  # only a ring can end a wait
    monkeypatch.setattr(wake, "FALLBACK", HOUR)


async def test_a_waiting_claim_takes_a_task_as_soon_as_it_is_rung(tmp_path: Path, registry: Registry,
                                                                  pipe: tuple[Any, Any], no_fallback: None) -> None:
    path = str(tmp_path / "hexq.db")
    claimer, writer = SQLiteBackend(path), SQLiteBackend(path)  # two connections, as two processes would have
    try:
        broker = WokenBroker(claimer, pipe[0])
        claim = asyncio.create_task(broker.claim(["default"], 5, lease_seconds=30, worker_id="w", wait=HOUR))
        await asyncio.sleep(0.2)  # let it find nothing and wait (sequencing only; not asserted)
        task = await new_task(writer, registry)  # the other connection's write: no in-process wakeup reaches it
        assert not claim.done()
        ring(pipe[1])
        leases = await asyncio.wait_for(claim, GUARD)
        assert [lease.task.id for lease in leases] == [task.id]
    finally:
        await claimer.close()
        await writer.close()


async def test_a_ring_with_nothing_new_does_not_end_the_wait(tmp_path: Path, pipe: tuple[Any, Any],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    backend = SQLiteBackend(str(tmp_path / "hexq.db"))
    try:
        broker = WokenBroker(backend, pipe[0])
        ring(pipe[1])
        ring(pipe[1])
        assert await broker.claim(["default"], 5, lease_seconds=30, worker_id="w", wait=0.3) == []
    finally:
        await backend.close()


async def test_a_write_the_serve_process_did_not_make_is_still_found_without_a_ring(
        tmp_path: Path, registry: Registry, pipe: tuple[Any, Any]) -> None:
    path = str(tmp_path / "hexq.db")
    claimer, writer = SQLiteBackend(path), SQLiteBackend(path)
    try:
        broker = WokenBroker(claimer, pipe[0])
        claim = asyncio.create_task(broker.claim(["default"], 5, lease_seconds=30, worker_id="w", wait=HOUR))
        await asyncio.sleep(0.2)
        task = await new_task(writer, registry)  # a handler's follow-up task, say: nobody rings
        leases = await asyncio.wait_for(claim, GUARD)  # the claim's own look, at most FALLBACK apart
        assert [lease.task.id for lease in leases] == [task.id]
    finally:
        await claimer.close()
        await writer.close()


async def test_without_the_serve_process_the_claim_falls_back_to_the_adapters_poll(
        tmp_path: Path, registry: Registry, pipe: tuple[Any, Any], no_fallback: None) -> None:
    path = str(tmp_path / "hexq.db")
    claimer, writer = SQLiteBackend(path), SQLiteBackend(path)
    try:
        broker = WokenBroker(claimer, pipe[0])
        pipe[1].close()  # the serve process is gone: EOF
        claim = asyncio.create_task(broker.claim(["default"], 5, lease_seconds=30, worker_id="w", wait=HOUR))
        await asyncio.sleep(0.2)
        task = await new_task(writer, registry)
        leases = await asyncio.wait_for(claim, GUARD)  # found by SQLite's own 5-50 ms poll, not by an hour's wait
        assert [lease.task.id for lease in leases] == [task.id]
    finally:
        await claimer.close()
        await writer.close()


def test_ringing_never_blocks_even_when_nobody_reads() -> None:
    reader, writer = multiprocessing.Pipe(duplex=False)
    os.set_blocking(writer.fileno(), False)
    for _ in range(100_000):  # far more than a pipe holds
        ring(writer)
    writer.close()
    ring(writer)  # closed: nothing happens
    reader.close()


# -- the poller starts invocations between ticks when woken -------------------------------------------
class RecordingInvoker:
    def __init__(self) -> None:
        self.asked: list[int] = []
        self.changed = asyncio.Event()

    async def trigger(self, n: int) -> int:
        self.asked.append(n)
        self.changed.set()
        return n


async def test_a_wake_starts_invocations_without_waiting_for_the_tick(registry: Registry, clock: FakeClock) -> None:
    backend = MemoryBackend(clock)
    tasks = TaskService(backend, backend, registry, clock)
    invoker = RecordingInvoker()
    config = PollerConfig(interval=HOUR, batch=10, max_invocations=4)
    poller = Poller(backend, backend, ScheduleService(backend, tasks, registry, lambda s, a: a), config, invoker)
    stop, woken = asyncio.Event(), asyncio.Event()
    running = asyncio.create_task(poller.run(stop, woken))
    try:
        await asyncio.wait_for(invoker.changed.wait(), GUARD)
        assert invoker.asked == [0]  # the first tick: nothing queued
        invoker.changed.clear()
        await tasks.submit_bulk([SubmitRequest("echo", {})] * 15)
        woken.set()
        await asyncio.wait_for(invoker.changed.wait(), GUARD)  # the next tick is an hour away
        assert invoker.asked == [0, 2] and not woken.is_set()
    finally:
        stop.set()
        await asyncio.wait_for(running, GUARD)


# -- invokers keep warm invocations ----------------------------------------------------------------------
async def test_the_in_process_invoker_keeps_its_warm_invocations_and_tells_when_one_ends(registry: Registry) -> None:
    container = bootstrap(Settings(backend_url="memory://", task_modules=(), idle_wait=0.05), registry=registry)
    ended = asyncio.Event()
    invoker = InProcessInvoker(container, cap=3, warm=2, on_finished=ended.set)
    try:
        assert await invoker.trigger(0) == 2  # none asked for, two kept warm
        assert await invoker.trigger(0) == 0 and invoker.in_flight == 2
        assert await invoker.trigger(5) == 1  # asked for more: up to the cap
        await asyncio.wait_for(ended.wait(), GUARD)  # idle: they end after idle_wait, and say so
    finally:
        await invoker.shutdown()


async def test_without_warm_nothing_starts_for_nothing(registry: Registry) -> None:
    container = bootstrap(Settings(backend_url="memory://", task_modules=(), idle_wait=0.05), registry=registry)
    invoker = InProcessInvoker(container, cap=3)
    assert await invoker.trigger(0) == 0 and invoker.in_flight == 0
    await invoker.shutdown()

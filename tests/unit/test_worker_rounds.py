"""How many round trips a worker makes, and that it waits on its Clock: claims in batches of half its
slots, settle-and-claim where the backend has it, heartbeats and timeouts driven by a FakeClock."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import pytest

from hexq.adapters.memory import MemoryBackend
from hexq.core.clock import FakeClock
from hexq.core.model import Lease, Settlement, Task, TaskStatus
from hexq.core.registry import Registry
from hexq.core.services import SubmitRequest, TaskService
from hexq.core.worker import LINGER, Invocation, Report, WorkerConfig


class Spy:
    """The memory backend as a plain Broker (no SettleAndClaim), noting every call."""

    def __init__(self, inner: MemoryBackend) -> None:
        self.inner = inner
        self.claims: list[tuple[int, int]] = []  # (asked, got)
        self.settles: list[int] = []
        self.extends = 0

    async def enqueue(self, tasks: Sequence[Task], *, cap: int = 0) -> list[Task]:
        return await self.inner.enqueue(tasks, cap=cap)

    async def claim(self, queues: Sequence[str], n: int, *, lease_seconds: float, worker_id: str,
                    wait: float = 0.0) -> list[Lease]:
        leases = await self.inner.claim(queues, n, lease_seconds=lease_seconds, worker_id=worker_id, wait=wait)
        self.claims.append((n, len(leases)))
        return leases

    async def extend(self, leases: Sequence[Lease], lease_seconds: float) -> list[Lease | None]:
        self.extends += 1
        return await self.inner.extend(leases, lease_seconds)

    async def settle(self, settlements: Sequence[Settlement]) -> list[bool]:
        self.settles.append(len(settlements))
        return await self.inner.settle(settlements)


class BothSpy(Spy):
    """A Spy whose backend settles and claims in one round trip."""

    def __init__(self, inner: MemoryBackend) -> None:
        super().__init__(inner)
        self.both: list[tuple[int, int, int]] = []  # (settled, asked, got)

    async def settle_and_claim(self, settlements: Sequence[Settlement], queues: Sequence[str], n: int, *,
                               lease_seconds: float, worker_id: str) -> tuple[list[bool], list[Lease]]:
        applied, leases = await self.inner.settle_and_claim(settlements, queues, n, lease_seconds=lease_seconds,
                                                            worker_id=worker_id)
        self.both.append((len(settlements), n, len(leases)))
        return applied, leases


class Forwarding:
    """A wrapper that forwards by __getattr__ and counts settles: the worker must not go around it."""

    def __init__(self, inner: MemoryBackend) -> None:
        self.inner = inner
        self.settled = 0

    async def settle(self, settlements: Sequence[Settlement]) -> list[bool]:
        self.settled += len(settlements)
        return await self.inner.settle(settlements)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture
def gates(registry: Registry) -> dict[int, asyncio.Event]:
    """Task type `gate`: task n runs until gates[n] is set."""
    events: dict[int, asyncio.Event] = {}

    @registry.task("gate")
    async def gate(payload: dict[str, int]) -> None:
        await events.setdefault(payload["n"], asyncio.Event()).wait()

    return events


async def submit(backend: MemoryBackend, registry: Registry, clock: FakeClock, type_: str, count: int) -> list[str]:
    service = TaskService(backend, backend, registry, clock)
    return [(await service.submit(SubmitRequest(type_, {"n": n}))).task.id for n in range(count)]


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("the worker never got there")


def start(broker: object, registry: Registry, clock: FakeClock, **config: Any) -> asyncio.Task[Report]:
    settings: dict[str, Any] = {"worker_id": "w1", "idle_wait": 0.01, "grace": 0.2, **config}
    return asyncio.create_task(Invocation(broker, registry, WorkerConfig(**settings), clock=clock).run())  # type: ignore[arg-type]


def release(gates: dict[int, asyncio.Event], n: int) -> None:
    gates.setdefault(n, asyncio.Event()).set()


async def test_claims_again_when_half_the_slots_are_free(registry: Registry, clock: FakeClock,
                                                         gates: dict[int, asyncio.Event]) -> None:
    backend = MemoryBackend(clock)
    await submit(backend, registry, clock, "gate", 8)
    spy = Spy(backend)
    run = start(spy, registry, clock, concurrency=4)
    await until(lambda: spy.claims == [(4, 4)])

    release(gates, 0)
    await until(lambda: spy.settles == [1])
    await asyncio.sleep(0.02)
    assert spy.claims == [(4, 4)]  # one slot of four is free: not yet

    release(gates, 1)
    await until(lambda: len(spy.claims) == 2)
    assert spy.claims[1] == (2, 2)  # two of four: claimed together, in one call

    for n in range(8):
        release(gates, n)
    report = await run
    assert (report.succeeded, report.claimed) == (8, 8)


async def test_a_slot_that_stays_free_is_claimed_after_lingering(registry: Registry, clock: FakeClock,
                                                                 gates: dict[int, asyncio.Event]) -> None:
    backend = MemoryBackend(clock)
    await submit(backend, registry, clock, "gate", 6)
    spy = Spy(backend)
    run = start(spy, registry, clock, concurrency=4)
    await until(lambda: spy.claims == [(4, 4)])
    release(gates, 0)
    await until(lambda: spy.settles == [1])
    clock.advance(LINGER / 2)
    await asyncio.sleep(0.02)
    assert spy.claims == [(4, 4)]
    clock.advance(LINGER / 2)  # the worker's clock, not the wall's, decides when it has waited enough
    await until(lambda: spy.claims == [(4, 4), (1, 1)])
    for n in range(6):
        release(gates, n)
    assert (await run).succeeded == 6


async def test_settle_and_claim_is_one_round_trip_where_the_backend_has_it(
        registry: Registry, clock: FakeClock, gates: dict[int, asyncio.Event]) -> None:
    backend = MemoryBackend(clock)
    await submit(backend, registry, clock, "gate", 6)
    spy = BothSpy(backend)
    run = start(spy, registry, clock, concurrency=4)
    await until(lambda: spy.claims == [(4, 4)])
    release(gates, 0)
    await until(lambda: spy.both == [(1, 1, 1)])  # the slot it frees is filled in the same call
    assert spy.settles == [] and spy.claims == [(4, 4)]
    for n in range(6):
        release(gates, n)
    report = await run
    assert (report.succeeded, report.claimed) == (6, 6)
    assert spy.settles == []  # every settle went with a claim while the invocation was claiming...
    assert sum(settled for settled, _, _ in spy.both) == 6  # ...and none was lost


async def test_a_busy_worker_pays_about_one_round_trip_per_batch(registry: Registry, clock: FakeClock) -> None:
    backend = MemoryBackend(clock)
    await submit(backend, registry, clock, "echo", 200)
    spy = BothSpy(backend)
    report = await start(spy, registry, clock, concurrency=10)
    assert report.succeeded == 200
    calls = len(spy.claims) + len(spy.settles) + len(spy.both)
    assert calls <= 200 / 10 + 5  # a batch of ten per round trip, give or take the first and the last


async def test_without_settle_and_claim_it_settles_and_claims(registry: Registry, clock: FakeClock) -> None:
    backend = MemoryBackend(clock)
    await submit(backend, registry, clock, "echo", 40)
    spy = Spy(backend)
    report = await start(spy, registry, clock, concurrency=10)
    assert report.succeeded == 40 and sum(spy.settles) == 40
    assert len(spy.claims) <= 40 / 5 + 2  # claims come at least half a batch at a time


async def test_a_wrapper_that_forwards_by_getattr_gets_plain_settles(registry: Registry, clock: FakeClock) -> None:
    backend = MemoryBackend(clock)
    await submit(backend, registry, clock, "echo", 12)
    wrapper = Forwarding(backend)
    report = await start(wrapper, registry, clock, concurrency=4)
    assert report.succeeded == 12 and wrapper.settled == 12


async def test_heartbeats_run_on_the_workers_clock(registry: Registry, clock: FakeClock,
                                                   gates: dict[int, asyncio.Event]) -> None:
    backend = MemoryBackend(clock)
    [task_id] = await submit(backend, registry, clock, "gate", 1)
    spy = Spy(backend)
    run = start(spy, registry, clock, lease_seconds=30.0)
    await until(lambda: spy.claims[:1] == [(10, 1)])
    await asyncio.sleep(0.02)
    assert spy.extends == 0  # no real time makes a heartbeat: only the clock's
    for beat in (1, 2, 3):
        clock.advance(10.0)
        await until(lambda: spy.extends == beat)  # noqa: B023  # awaited before the next beat
    assert await backend.reclaim_expired(10, 30.0) == []  # 30 s of fake time passed; the lease held
    release(gates, 0)
    assert (await run).succeeded == 1
    stored = await backend.get(task_id)
    assert stored is not None and stored.status is TaskStatus.SUCCEEDED


async def test_a_timeout_fires_when_the_workers_clock_passes_it(registry: Registry, clock: FakeClock,
                                                                gates: dict[int, asyncio.Event]) -> None:
    registry.task("stuck", timeout=5.0, max_attempts=1)(registry.get("gate").fn)
    backend = MemoryBackend(clock)
    [task_id] = await submit(backend, registry, clock, "stuck", 1)
    spy = Spy(backend)
    run = start(spy, registry, clock)
    due = clock.now() + 5.0
    # The handler's timeout is a sleep on the fake clock: advance only once it is registered, or (on a loaded
    # machine, seen once in CI) the advance lands first, the deadline moves with it and the run never ends.
    await until(lambda: bool(spy.claims) and any(at == due for at, *_ in clock._sleepers))
    clock.advance(4.9)
    await asyncio.sleep(0.02)
    assert spy.settles == []
    clock.advance(0.2)
    report = await run
    stored = await backend.get(task_id)
    assert report.dead == 1 and stored is not None
    assert (stored.status, stored.error) == (TaskStatus.DEAD, "timeout: exceeded 5s")


async def test_a_task_whose_claim_says_cancelled_never_runs(registry: Registry, clock: FakeClock) -> None:
    ran: list[int] = []

    @registry.task("record")
    async def record(payload: dict[str, int]) -> None:
        ran.append(payload["n"])

    class CancelledOnClaim(Spy):  # as a reclaim of a task whose cancellation was asked for hands it out
        async def claim(self, queues: Sequence[str], n: int, *, lease_seconds: float, worker_id: str,
                        wait: float = 0.0) -> list[Lease]:
            leases = await super().claim(queues, n, lease_seconds=lease_seconds, worker_id=worker_id, wait=wait)
            return [replace(lease, cancel_requested=True) for lease in leases]

    backend = MemoryBackend(clock)
    [task_id] = await submit(backend, registry, clock, "record", 1)
    report = await start(CancelledOnClaim(backend), registry, clock)
    stored = await backend.get(task_id)
    assert ran == [] and report.claimed == 1
    assert stored is not None and stored.status is TaskStatus.CANCELLED

"""The Events port: the worker, the poller and the services tell an observer what happened, once each."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from hexq.adapters.memory import MemoryBackend
from hexq.core.clock import FakeClock
from hexq.core.errors import UnknownTaskType, ValidationError
from hexq.core.events import NO_EVENTS, queue_wait
from hexq.core.model import Lease, Settlement, Task, TaskStatus
from hexq.core.poller import Poller, PollerConfig
from hexq.core.registry import Registry
from hexq.core.schedules import ScheduleService
from hexq.core.services import Limits, SubmitRequest, TaskService
from hexq.core.worker import Invocation, WorkerConfig


class Recorder:
    """An Events observer that keeps (event, details) in order."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []

    def names(self) -> list[str]:
        return [name for name, _ in self.seen]

    def submitted(self, tasks: Sequence[Task]) -> None:
        self.seen.append(("submitted", [t.id for t in tasks]))

    def rejected(self, reason: str) -> None:
        self.seen.append(("rejected", reason))

    def started(self, task: Task) -> None:
        self.seen.append(("started", (task.id, task.status)))

    def finished(self, task: Task, after: Task, seconds: float) -> None:
        self.seen.append(("finished", (task.id, task.status, after.status, seconds)))

    def fenced(self, op: str, task: Task) -> None:
        self.seen.append(("fenced", (op, task.id)))

    def recovered(self, task: Task) -> None:
        self.seen.append(("recovered", (task.id, task.status)))

    def cancelled(self, task: Task) -> None:
        self.seen.append(("cancelled", task.id))

    def replayed(self, tasks: Sequence[Task]) -> None:
        self.seen.append(("replayed", [t.id for t in tasks]))

    def schedule_fired(self, name: str, lag: float) -> None:
        self.seen.append(("schedule_fired", (name, lag)))

    def rate_waited(self, task_type: str, seconds: float) -> None:
        self.seen.append(("rate_waited", (task_type, seconds)))

    def deferred(self, task: Task, after: Task, reason: str) -> None:
        self.seen.append(("deferred", (task.id, reason, after.delay)))

    def circuit_changed(self, name: str, before: str, after: str) -> None:
        self.seen.append(("circuit_changed", (name, before, after)))


def _cron(spec: str, after: float) -> float:
    raise ValueError("tests use @every")


class World:
    def __init__(self, registry: Registry, clock: FakeClock) -> None:
        self.events = Recorder()
        self.clock = clock
        self.backend = MemoryBackend(clock)
        self.tasks = TaskService(self.backend, self.backend, registry, clock, Limits(max_queued_per_tenant=3),
                                 self.events)
        self.schedules = ScheduleService(self.backend, self.tasks, registry, _cron, self.events)
        self.poller = Poller(self.backend, self.backend, self.schedules, PollerConfig(lease_seconds=30.0),
                             events=self.events)
        self.registry = registry

    def invocation(self) -> Invocation:
        config = WorkerConfig(worker_id="w1", idle_wait=0.01, budget=10.0, grace=0.2)
        return Invocation(self.backend, self.registry, config, rand=lambda: 0.0, events=self.events)

    async def submit(self, type_: str, **kw: Any) -> Task:
        return (await self.tasks.submit(SubmitRequest(type_, {}, **kw))).task


@pytest.fixture
def world(registry: Registry, clock: FakeClock) -> World:
    return World(registry, clock)


async def test_a_submit_is_told_once_and_an_idempotent_repeat_not_again(world: World) -> None:
    first = await world.submit("echo", idempotency_key="k")
    again = await world.submit("echo", idempotency_key="k")
    assert again.id == first.id
    assert world.events.seen == [("submitted", [first.id])]


async def test_refused_submits_are_told_with_their_reason(world: World) -> None:
    with pytest.raises(UnknownTaskType):
        await world.submit("nope")
    with pytest.raises(ValidationError):
        await world.submit("echo", max_attempts=0)
    with pytest.raises(ValidationError):
        await world.tasks.submit_bulk([])
    for _ in range(3):
        await world.submit("echo", tenant="t")
    with pytest.raises(Exception, match="queue"):
        await world.submit("echo", tenant="t")
    rejected = [detail for name, detail in world.events.seen if name == "rejected"]
    assert rejected == ["unknown_type", "validation", "validation", "queue_full"]


async def test_each_attempt_is_started_and_finished_with_what_the_backend_took(world: World) -> None:
    ok = await world.submit("echo")
    bad = await world.submit("boom", max_attempts=1)
    report = await world.invocation().run()
    assert report.succeeded == 1 and report.dead == 1
    started = {detail[0]: detail[1] for name, detail in world.events.seen if name == "started"}
    assert started == {ok.id: TaskStatus.RUNNING, bad.id: TaskStatus.RUNNING}
    finished = {d[0]: d[1:3] for name, d in world.events.seen if name == "finished"}
    assert finished == {ok.id: (TaskStatus.RUNNING, TaskStatus.SUCCEEDED),
                        bad.id: (TaskStatus.RUNNING, TaskStatus.DEAD)}
    assert all(d[3] >= 0.0 for name, d in world.events.seen if name == "finished")


class HandsOutAStaleLease:
    """A broker whose first claim hands out a lease the backend has since taken back (as a worker that was
    paused past its lease would hold): the settle that follows is refused."""

    def __init__(self, backend: MemoryBackend, lease: Lease) -> None:
        self._backend = backend
        self._stale: list[Lease] = [lease]

    async def enqueue(self, tasks: Sequence[Task], *, cap: int = 0) -> list[Task]:
        return await self._backend.enqueue(tasks, cap=cap)

    async def claim(self, queues: Sequence[str], n: int, **kw: Any) -> list[Lease]:
        stale, self._stale = self._stale, []
        if not stale:
            await asyncio.sleep(0.001)  # as a real claim waits for work, letting the running task go on
        return stale

    async def extend(self, leases: Sequence[Lease], lease_seconds: float) -> list[Lease | None]:
        return await self._backend.extend(leases, lease_seconds)

    async def settle(self, settlements: Sequence[Settlement]) -> list[bool]:
        return await self._backend.settle(settlements)


async def test_a_stale_settle_is_told_as_fenced_and_not_as_finished(world: World) -> None:
    task = await world.submit("echo")
    [lease] = await world.backend.claim(["default"], 1, lease_seconds=30, worker_id="gone")
    world.clock.advance(31)
    await world.poller.tick()  # recovered: the old lease is stale now
    config = WorkerConfig(worker_id="w1", idle_wait=0.01, budget=10.0, grace=0.2)
    report = await Invocation(HandsOutAStaleLease(world.backend, lease), world.registry, config,
                              events=world.events).run()
    assert (report.stale, report.reason) == (1, "empty")
    assert ("fenced", ("settle", task.id)) in world.events.seen
    assert "finished" not in world.events.names()


async def test_a_recovered_lease_is_told_with_the_state_the_poller_settled(world: World) -> None:
    retried = await world.submit("echo")
    last = await world.submit("echo", max_attempts=1)
    await world.backend.claim(["default"], 2, lease_seconds=30, worker_id="gone")
    world.clock.advance(31)
    assert (await world.poller.tick()).recovered == 2
    recovered = dict(d for name, d in world.events.seen if name == "recovered")
    assert recovered == {retried.id: TaskStatus.SCHEDULED, last.id: TaskStatus.DEAD}


async def test_cancel_replay_and_schedule_fires_are_told(world: World) -> None:
    waiting = await world.submit("echo", delay=60)
    await world.tasks.cancel(waiting.id)
    dead = await world.submit("boom", max_attempts=1)
    await world.invocation().run()
    assert [t.id for t in await world.tasks.replay([dead.id, "missing"])] == [dead.id]
    await world.schedules.put("tick", "@every 10s", "echo")
    world.clock.advance(12.5)
    await world.poller.tick()
    assert ("cancelled", waiting.id) in world.events.seen
    assert ("replayed", [dead.id]) in world.events.seen
    assert ("schedule_fired", ("tick", 2.5)) in world.events.seen


def test_queue_wait_counts_from_when_the_task_was_due() -> None:
    task = Task(id="t", type="echo", payload={}, created_at=100.0, run_at=160.0, started_at=161.5)
    assert queue_wait(task) == 1.5  # a minute of deliberate delay is not waiting
    assert queue_wait(Task(id="t", type="echo", payload={}, created_at=100.0, started_at=100.25)) == 0.25
    assert queue_wait(Task(id="t", type="echo", payload={}, created_at=100.0)) is None


def test_no_events_ignores_everything() -> None:
    task = Task(id="t", type="echo", payload={})
    NO_EVENTS.submitted([task])
    NO_EVENTS.finished(task, task, 1.0)
    NO_EVENTS.rejected("validation")

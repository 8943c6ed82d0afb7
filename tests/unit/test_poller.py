from __future__ import annotations

import pytest

from hexq.adapters.memory import MemoryBackend
from hexq.core.clock import FakeClock
from hexq.core.model import Settlement, TaskQuery, TaskStatus
from hexq.core.poller import Poller, PollerConfig
from hexq.core.registry import Registry
from hexq.core.schedules import ScheduleService
from hexq.core.services import SubmitRequest, TaskService


class RecordingInvoker:
    def __init__(self, capacity: int) -> None:
        self.asked: list[int] = []
        self.capacity = capacity

    async def trigger(self, n: int) -> int:
        self.asked.append(n)
        return min(n, self.capacity)


def _cron(spec: str, after: float) -> float:
    raise ValueError("tests use @every")


class World:
    def __init__(self, registry: Registry, clock: FakeClock, invoker: RecordingInvoker | None = None) -> None:
        self.clock = clock
        self.backend = MemoryBackend(clock)
        self.tasks = TaskService(self.backend, self.backend, registry, clock)
        self.schedules = ScheduleService(self.backend, self.tasks, registry, _cron)
        config = PollerConfig(batch=10, max_invocations=4, lease_seconds=30.0, retention=3600.0)
        self.poller = Poller(self.backend, self.backend, self.schedules, config, invoker)


@pytest.fixture
def world(registry: Registry, clock: FakeClock) -> World:
    return World(registry, clock)


async def test_tick_promotes_due_tasks(world: World) -> None:
    task = (await world.tasks.submit(SubmitRequest("echo", {}, delay=5))).task
    assert (await world.poller.tick()).promoted == 0
    world.clock.advance(5)
    assert (await world.poller.tick()).promoted == 1
    assert (await world.tasks.get(task.id)).status is TaskStatus.QUEUED


async def test_expired_lease_counts_as_a_failed_attempt(world: World) -> None:
    task = (await world.tasks.submit(SubmitRequest("boom", {}))).task
    [lease] = await world.backend.claim(["default"], 1, lease_seconds=30, worker_id="gone")
    world.clock.advance(29)
    assert (await world.poller.tick()).recovered == 0
    world.clock.advance(2)
    assert (await world.poller.tick()).recovered == 1
    after = await world.tasks.get(task.id)
    # The lease expiry was the wait: the task is back in the queue at once, with the attempt counted.
    assert (after.status, after.attempts, after.error) == (TaskStatus.QUEUED, 1,
                                                           "lease expired: worker lost or hung")
    assert await world.backend.settle([Settlement(lease, lease.task.moved_to(TaskStatus.SUCCEEDED))]) == [False]


async def test_a_task_cancelled_while_its_worker_is_lost_ends_cancelled(world: World) -> None:
    task = (await world.tasks.submit(SubmitRequest("echo", {}))).task
    await world.backend.claim(["default"], 1, lease_seconds=30, worker_id="gone")
    assert (await world.tasks.cancel(task.id)).status is TaskStatus.RUNNING  # asked; nobody hears it
    world.clock.advance(31)

    assert (await world.poller.tick()).recovered == 1

    after = await world.tasks.get(task.id)
    assert (after.status, after.attempts, after.finished_at) == (TaskStatus.CANCELLED, 1, world.clock.now())


async def test_crash_on_the_last_attempt_dead_letters(world: World) -> None:
    task = (await world.tasks.submit(SubmitRequest("echo", {}, max_attempts=1))).task
    await world.backend.claim(["default"], 1, lease_seconds=30, worker_id="gone")
    world.clock.advance(60)
    await world.poller.tick()
    assert (await world.tasks.get(task.id)).status is TaskStatus.DEAD


async def test_schedules_fire_once_per_due_time(world: World) -> None:
    await world.schedules.put("heartbeat", "@every 1m", "echo", {"from": "schedule"})
    assert (await world.poller.tick()).fired == 0
    world.clock.advance(61)
    assert (await world.poller.tick()).fired == 1
    assert (await world.poller.tick()).fired == 0
    world.clock.advance(600)  # ten missed runs are coalesced into one
    assert (await world.poller.tick()).fired == 1
    page = await world.tasks.query(TaskQuery(type="echo"))
    assert [t.payload for t in page.items] == [{"from": "schedule"}] * 2
    schedule = await world.schedules.get("heartbeat")
    assert schedule.next_run == world.clock.now() + 60


async def test_two_pollers_fire_a_due_schedule_once(world: World, registry: Registry) -> None:
    other = Poller(world.backend, world.backend, world.schedules, PollerConfig())
    await world.schedules.put("nightly", "@every 1h", "echo")
    world.clock.advance(3601)
    assert (await world.poller.tick()).fired + (await other.tick()).fired == 1


async def test_invocations_follow_the_backlog_up_to_the_cap(registry: Registry, clock: FakeClock) -> None:
    invoker = RecordingInvoker(capacity=3)
    world = World(registry, clock, invoker)
    assert (await world.poller.tick()).invoked == 0
    assert invoker.asked == [0]  # nothing queued: none asked for (an invoker may still keep warm ones waiting)
    await world.tasks.submit_bulk([SubmitRequest("echo", {})] * 25)
    report = await world.poller.tick()
    assert (report.backlog, invoker.asked[-1], report.invoked) == (25, 3, 3)
    await world.tasks.submit_bulk([SubmitRequest("echo", {})] * 100)
    await world.poller.tick()
    assert invoker.asked[-1] == 4  # ceil(125 / 10) = 13, capped at max_invocations


async def test_finished_tasks_are_purged_after_retention(world: World) -> None:
    task = (await world.tasks.submit(SubmitRequest("echo", {}))).task
    await world.tasks.cancel(task.id)
    world.clock.advance(3599)
    assert (await world.poller.tick()).purged == 0
    world.clock.advance(2)
    assert (await world.poller.tick()).purged == 1
    assert await world.backend.get(task.id) is None

"""ScheduleStore contract: CRUD, and advance_schedule as the compare-and-set that fires a schedule once."""

from __future__ import annotations

from hexq.core.clock import FakeClock
from hexq.core.model import Priority, TaskQuery, TaskStatus
from hexq.core.ports import Backend
from hexq.core.registry import Registry
from hexq.core.schedule import Schedule
from hexq.core.schedules import ScheduleService
from hexq.core.services import TaskService


def no_cron(spec: str, after: float) -> float:
    raise ValueError("the contract uses @every specs only")


async def test_put_get_list_and_delete(backend: Backend) -> None:
    nightly = Schedule("nightly", "0 3 * * *", "echo", {"a": [1, {"b": None}]}, "q1", Priority.HIGH,
                       next_run=1_700_010_800.0, last_run=1_699_924_400.5, enabled=False, tenant="acme")
    minutely = Schedule("minutely", "@every 1m", "echo", next_run=1_700_000_060.0)

    await backend.put_schedule(nightly)
    await backend.put_schedule(minutely)

    assert await backend.get_schedule("nightly") == nightly
    assert await backend.get_schedule("minutely") == minutely
    assert await backend.get_schedule("missing") is None
    assert await backend.schedules() == [minutely, nightly]  # by name

    assert await backend.delete_schedule("nightly") is True
    assert await backend.delete_schedule("nightly") is False
    assert await backend.schedules() == [minutely]


async def test_put_replaces_a_schedule_of_the_same_name(backend: Backend) -> None:
    await backend.put_schedule(Schedule("s", "@every 1m", "echo", next_run=60.0))
    replacement = Schedule("s", "@every 5m", "mail", {"x": 1}, next_run=300.0)

    await backend.put_schedule(replacement)

    assert await backend.schedules() == [replacement]


async def test_advance_is_a_compare_and_set_on_next_run(backend: Backend) -> None:
    await backend.put_schedule(Schedule("s", "@every 1m", "echo", next_run=1_700_000_060.25))

    assert await backend.advance_schedule("s", 1_700_000_060.25, 1_700_000_120.25) is True
    stored = await backend.get_schedule("s")
    assert stored is not None
    assert (stored.next_run, stored.last_run) == (1_700_000_120.25, 1_700_000_060.25)

    # a second poller that read the old next_run loses the race
    assert await backend.advance_schedule("s", 1_700_000_060.25, 1_700_000_120.25) is False
    assert await backend.get_schedule("s") == stored
    assert await backend.advance_schedule("missing", 1.0, 2.0) is False


async def test_due_schedule_fires_once_per_due_time(backend: Backend, service: TaskService, registry: Registry,
                                                    clock: FakeClock) -> None:
    schedules = ScheduleService(backend, service, registry, no_cron)
    await schedules.put("tick", "@every 1m", "echo", {"n": 1})

    assert await schedules.fire_due() == 0
    clock.advance(60)
    assert await schedules.fire_due() == 1
    assert await schedules.fire_due() == 0  # already advanced to the next minute

    page = await backend.query(TaskQuery(type="echo"))
    assert [(t.status, dict(t.payload)) for t in page.items] == [(TaskStatus.QUEUED, {"n": 1})]
    stored = await schedules.get("tick")
    assert (stored.last_run, stored.next_run) == (clock.now(), clock.now() + 60)

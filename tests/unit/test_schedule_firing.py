"""The poller fires every due schedule it can, even when one stored schedule cannot compute its next fire."""

from __future__ import annotations

import pytest

from hexq.core.clock import FakeClock
from hexq.core.errors import ValidationError
from hexq.core.model import TaskQuery
from hexq.core.registry import Registry, TaskSpec
from hexq.core.schedule import MAX_FIRE_TIME, Schedule
from hexq.functions.bootstrap import Container, bootstrap
from hexq.functions.settings import Settings


@pytest.fixture
def container(registry: Registry, clock: FakeClock) -> Container:
    return bootstrap(Settings(backend_url="memory://", task_modules=()), clock=clock, registry=registry)


async def fired_types(container: Container) -> list[str]:
    return [task.type for task in (await container.tasks.query(TaskQuery(limit=50))).items]


async def test_a_due_schedule_fires_and_moves_on(container: Container, clock: FakeClock) -> None:
    await container.schedules.put("tick", "@every 1m", "echo")
    clock.advance(61)

    assert await container.schedules.fire_due() == 1
    assert (await container.schedules.get("tick")).next_run == clock.now() + 60


@pytest.mark.parametrize("spec", ["@every 0.5s", "@every 99999999999999999d", "@every " + "9" * 400 + "d"])
async def test_a_stored_schedule_with_no_next_fire_fires_once_and_does_not_stop_the_others(
        container: Container, clock: FakeClock, spec: str) -> None:
    # As a version before issue #9 (or a hand edit) stored it: due now, with a spec that has no next fire.
    await container.backend.put_schedule(Schedule("a-old", spec, "echo", next_run=clock.now() - 1))
    await container.schedules.put("b-tick", "@every 1m", "echo")
    clock.advance(61)

    # It was due, so it fires this once; with no next fire in range it is parked at the last representable
    # time, and the tick goes on to fire the others.
    assert await container.schedules.fire_due() == 2
    assert await fired_types(container) == ["echo", "echo"]
    assert (await container.schedules.get("a-old")).next_run == MAX_FIRE_TIME
    clock.advance(61)
    assert await container.schedules.fire_due() == 1  # b-tick only


async def test_a_schedule_whose_following_fire_is_past_year_9999_does_not_stop_the_others(
        container: Container, clock: FakeClock) -> None:
    days = (MAX_FIRE_TIME - clock.now()) // 86_400
    await container.schedules.put("a-last", f"@every {days:.0f}d", "echo")  # accepted: its first fire is in range
    clock.advance(days * 86_400)
    await container.schedules.put("b-tick", "@every 1m", "echo")
    clock.advance(61)

    assert await container.schedules.fire_due() >= 1
    assert "echo" in await fired_types(container)


async def test_a_cron_schedule_that_has_fired_for_the_last_time_does_not_stop_the_others(
        container: Container, clock: FakeClock) -> None:
    await container.schedules.put("a-once", "0 0 1 1 * 0 2024", "echo")  # a year field: one fire, 2024-01-01
    clock.advance((await container.schedules.get("a-once")).next_run - clock.now() + 1)
    await container.schedules.put("b-tick", "@every 1m", "echo")
    clock.advance(61)

    assert await container.schedules.fire_due() >= 1


async def test_a_payload_the_types_validator_refuses_is_refused_when_the_schedule_is_put(
        container: Container, registry: Registry) -> None:
    def positive(payload: dict[str, object]) -> None:
        if not isinstance(payload.get("n"), int) or payload["n"] < 1:  # type: ignore[operator]
            raise ValueError("n must be a positive integer")

    registry.register(TaskSpec("counted", lambda payload: None, validate=positive))

    with pytest.raises(ValidationError) as refused:
        await container.schedules.put("bad", "@every 1m", "counted", {"n": 0})
    assert refused.value.field == "payload"
    assert await container.backend.get_schedule("bad") is None
    assert (await container.schedules.put("good", "@every 1m", "counted", {"n": 2})).payload == {"n": 2}

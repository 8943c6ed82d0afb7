"""The Clock port's two clocks: the system's, and a fake one whose sleepers wake only when it is advanced."""

from __future__ import annotations

import asyncio
import threading
import time

from hexq.core.clock import FakeClock, SystemClock
from hexq.core.context import RunningTask
from hexq.core.model import Task


async def test_a_fake_sleep_ends_when_the_clock_is_advanced_past_it() -> None:
    clock = FakeClock()
    woke: list[str] = []

    async def nap(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(name)

    naps = [asyncio.create_task(nap("short", 1.0)), asyncio.create_task(nap("long", 5.0))]
    await asyncio.sleep(0.01)
    assert woke == []
    clock.advance(1.0)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert woke == ["short"]
    clock.advance(10.0)
    await asyncio.gather(*naps)
    assert woke == ["short", "long"] and clock.monotonic() == clock.now()


async def test_a_cancelled_fake_sleep_is_forgotten() -> None:
    clock = FakeClock()
    nap = asyncio.create_task(clock.sleep(1.0))
    await asyncio.sleep(0)
    nap.cancel()
    clock.advance(2.0)  # must not trip over the cancelled sleeper
    await asyncio.sleep(0)
    assert nap.cancelled()


async def test_a_fake_sleep_of_nothing_only_yields() -> None:
    await asyncio.wait_for(FakeClock().sleep(0), timeout=1.0)


async def test_the_system_clock_sleeps_on_the_event_loop() -> None:
    clock = SystemClock()
    before = clock.monotonic()
    await clock.sleep(0.01)
    assert clock.monotonic() - before >= 0.009 and abs(clock.now() - time.time()) < 1.0


def test_a_running_task_wakes_a_sync_handler_waiting_for_its_cancellation() -> None:
    running = RunningTask(Task(id="t", type="echo", payload={}))
    seen: list[bool] = []
    waiter = threading.Thread(target=lambda: seen.append(running.wait_cancelled(5.0)))
    waiter.start()
    assert not running.cancelled
    running.cancel()
    waiter.join(5.0)
    assert seen == [True] and running.cancelled and running.wait_cancelled(0)
    assert running.id == "t"  # the task's fields read through

"""Circuits: one worker's cached view of the breakers, two of them on one store (two workers)."""

from __future__ import annotations

import asyncio

from hexq.adapters.memory import MemoryBackend
from hexq.core.breaker import Breaker, BreakerState, Circuit
from hexq.core.circuits import MIN_HOLD, REFRESH, Circuits
from hexq.core.clock import FakeClock

POLICY = Breaker(failures=4, reset=10.0)


async def settle() -> None:
    """Let the background writers and readers run (they await only the in-memory store)."""
    for _ in range(5):
        await asyncio.sleep(0)


class CountingStore(MemoryBackend):
    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.reads = self.writes = 0

    async def breaker_states(self) -> tuple[float, list[BreakerState]]:
        self.reads += 1
        return await super().breaker_states()

    async def put_breaker(self, state: BreakerState) -> BreakerState | None:
        self.writes += 1
        return await super().put_breaker(state)


async def test_failures_from_two_workers_add_up_and_open_it_for_both(clock: FakeClock) -> None:
    store = CountingStore(clock)
    a, b = Circuits(store, clock), Circuits(store, clock)
    await a.start()
    await b.start()
    for circuits in (a, b, a, b):  # each write races the other's: compare-and-set makes both count
        circuits.record("t", POLICY, True)
        await settle()
    _, [stored] = await store.breaker_states()
    assert stored.circuit is Circuit.OPEN  # 2 + 2 consecutive failures: none was lost to the race
    clock.advance(REFRESH)
    for circuits in (a, b):
        await circuits.admit("t", POLICY, 60.0)  # starts a read: a copy REFRESH old is read again
        await settle()
        held = await circuits.admit("t", POLICY, 60.0)
        assert not held.run and held.delay == 10.0 - REFRESH
    await a.close()
    await b.close()


async def test_a_healthy_type_costs_no_round_trip(clock: FakeClock) -> None:
    store = CountingStore(clock)
    circuits = Circuits(store, clock)
    await circuits.start()
    for _ in range(1000):
        assert (await circuits.admit("t", POLICY, 60.0)).run
        circuits.record("t", POLICY, False)
    await settle()
    assert (store.reads, store.writes) == (1, 0)  # the first read only
    await circuits.close()


async def test_only_one_of_two_workers_becomes_the_probe(clock: FakeClock) -> None:
    store = MemoryBackend(clock)
    opened = await store.put_breaker(BreakerState("t", Circuit.OPEN, opened_at=clock.now()))
    assert opened is not None
    a, b = Circuits(store, clock), Circuits(store, clock)
    await a.start()
    await b.start()
    clock.advance(10.0)
    first, second = await asyncio.gather(a.admit("t", POLICY, 60.0), b.admit("t", POLICY, 60.0))
    assert sorted([first.run, second.run]) == [False, True]
    loser = second if first.run else first
    assert loser.delay == 10.0  # until the probe's deadline, capped at reset
    (a if first.run else b).record("t", POLICY, False)  # the probe succeeded
    await settle()
    _, [state] = await store.breaker_states()
    assert state.circuit is Circuit.CLOSED
    await a.close()
    await b.close()


async def test_times_are_the_backends_even_when_this_hosts_clock_is_off(clock: FakeClock) -> None:
    backend_clock = FakeClock(start=clock.now() + 3600.0)  # the worker's clock is an hour behind
    store = MemoryBackend(backend_clock)
    opened = await store.put_breaker(BreakerState("t", Circuit.OPEN, opened_at=backend_clock.now()))
    assert opened is not None
    circuits = Circuits(store, clock)
    await circuits.start()
    held = await circuits.admit("t", POLICY, 60.0)
    assert not held.run and held.delay == 10.0  # not an hour and ten seconds
    assert (await circuits.admit("t", Breaker(failures=1, reset=0.1), 60.0)).delay == MIN_HOLD
    await circuits.close()

"""BreakerStore: every backend keeps circuit breakers as versioned records, written by compare-and-set."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from hexq.core import breaker, outcome
from hexq.core.breaker import Breaker, BreakerState, Circuit
from hexq.core.clock import FakeClock
from hexq.core.model import AttemptOutcome, Settlement, Task, TaskStatus
from hexq.core.ports import Backend
from hexq.core.retry import Retry, RetryPolicy


async def test_nothing_is_stored_at_first_and_the_clock_is_the_backends(backend: Backend, clock: FakeClock) -> None:
    now, states = await backend.breaker_states()
    assert states == []
    assert now == await backend.now()


async def test_a_put_is_read_back_with_the_next_version(backend: Backend, clock: FakeClock) -> None:
    state = breaker.opened(BreakerState("payments"), clock.now())
    stored = await backend.put_breaker(state)
    assert stored is not None and stored.version == 1
    _, states = await backend.breaker_states()
    assert states == [stored]
    assert states[0].circuit is Circuit.OPEN and states[0].opened_at == clock.now()


async def test_a_stale_version_is_refused_and_changes_nothing(backend: Backend) -> None:
    first = await backend.put_breaker(BreakerState("b", failures=1))
    assert first is not None
    second = await backend.put_breaker(BreakerState("b", failures=2, version=first.version))
    assert second is not None and second.version == 2
    assert await backend.put_breaker(BreakerState("b", failures=9, version=first.version)) is None
    assert await backend.put_breaker(BreakerState("b", failures=9)) is None  # "none stored" is stale too
    _, states = await backend.breaker_states()
    assert [(s.failures, s.version) for s in states] == [(2, 2)]


async def test_breakers_are_listed_by_name_with_every_field(backend: Backend) -> None:
    full = BreakerState("zeta", Circuit.HALF_OPEN, failures=3, recent="0110", opened_at=12.5, successes=1,
                        probe_until=42.25, forced=True)
    for state in (full, BreakerState("alpha")):
        assert await backend.put_breaker(state) is not None
    _, states = await backend.breaker_states()
    assert [s.name for s in states] == ["alpha", "zeta"]
    assert states[1] == BreakerState("zeta", Circuit.HALF_OPEN, 3, "0110", 12.5, 1, 42.25, True, version=1)


async def test_concurrent_writers_of_one_version_have_one_winner(backend: Backend) -> None:
    """What keeps two workers from both becoming the half-open probe."""
    base = await backend.put_breaker(breaker.opened(BreakerState("probe"), 0.0))
    assert base is not None
    policy = Breaker(reset=1.0)
    tries = [breaker.probing(base, policy, 5.0, 10.0 + i) for i in range(8)]
    results = await asyncio.gather(*(backend.put_breaker(t) for t in tries if t is not None))
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    _, states = await backend.breaker_states()
    assert states == winners


async def test_a_task_given_back_unrun_keeps_its_attempt(backend: Backend, clock: FakeClock,
                                                         make_task: Callable[..., Task]) -> None:
    """What an open breaker (outcome.held) and Retry (outcome.deferred) write: the claim's attempt is taken back."""
    [task] = await backend.enqueue([make_task()])
    [lease] = await backend.claim(["default"], 1, lease_seconds=30, worker_id="w")
    assert lease.task.attempts == 1
    assert await backend.settle([Settlement(lease, outcome.held(lease.task, 5.0))]) == [True]
    held = await backend.get(task.id)
    assert held is not None
    assert (held.status, held.attempts, held.run_at) == (TaskStatus.SCHEDULED, 0, clock.now() + 5.0)
    clock.advance(5.0)
    await backend.promote_due(100)
    [again] = await backend.claim(["default"], 1, lease_seconds=30, worker_id="w", wait=2.0)
    assert (again.task.id, again.task.attempts) == (task.id, 1)
    deferred = outcome.deferred(again.task, Retry(after=2.0, reason="429"), RetryPolicy(), 3)
    assert await backend.settle([Settlement(again, deferred)]) == [True]
    stored = await backend.get(task.id)
    assert stored is not None and (stored.status, stored.attempts) == (TaskStatus.SCHEDULED, 0)
    assert [(a.outcome, a.delay) for a in stored.history] == [(AttemptOutcome.DEFERRED, 2.0)]

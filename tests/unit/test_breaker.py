"""The circuit breaker state machine (hexq.core.breaker), on a fake clock's times."""

from __future__ import annotations

import pytest

from hexq.core import breaker
from hexq.core.breaker import Breaker, BreakerState, Circuit
from hexq.core.clock import FakeClock
from hexq.core.errors import ConfigurationError


def run(state: BreakerState, policy: Breaker, outcomes: str, now: float) -> BreakerState:
    """Record outcomes given as text: 'f' failed, 's' succeeded."""
    for outcome in outcomes:
        state = breaker.record(state, policy, outcome == "f", now)
    return state


def test_consecutive_failures_open_it_and_a_success_between_resets_the_count() -> None:
    policy, clock = Breaker(failures=3), FakeClock()
    assert run(BreakerState("t"), policy, "ffsff", clock.now()).circuit is Circuit.CLOSED
    opened = run(BreakerState("t"), policy, "ffsfff", clock.now())
    assert opened.circuit is Circuit.OPEN and opened.opened_at == clock.now()


def test_a_failure_ratio_opens_it_once_the_window_is_full() -> None:
    policy = Breaker(failures=0, ratio=0.5, window=4)
    assert run(BreakerState("t"), policy, "fsf", 0.0).circuit is Circuit.CLOSED  # 3 of 4 known
    assert run(BreakerState("t"), policy, "fsfs", 0.0).circuit is Circuit.OPEN
    assert run(BreakerState("t"), policy, "fssss", 0.0).recent == ""  # the failure left the window


def test_open_gives_tasks_back_until_reset_then_one_probe_at_a_time() -> None:
    policy, clock = Breaker(failures=1, reset=30.0), FakeClock()
    state = run(BreakerState("t"), policy, "f", clock.now())
    clock.advance(10)
    held = breaker.admit(state, policy, clock.now())
    assert not held.run and not held.probe and held.delay == pytest.approx(20.0)
    clock.advance(20)
    assert breaker.admit(state, policy, clock.now()).probe
    probing = breaker.probing(state, policy, clock.now(), 5.0)
    assert probing is not None and probing.circuit is Circuit.HALF_OPEN
    long_probe = breaker.probing(state, policy, clock.now(), 600.0)
    assert long_probe is not None and breaker.admit(long_probe, policy, clock.now()).delay == 30.0  # reset, at most
    other = breaker.admit(probing, policy, clock.now())
    assert not other.run and not other.probe and other.delay == pytest.approx(5.0)
    assert breaker.probing(probing, policy, clock.now(), 5.0) is None
    clock.advance(5)  # the probe's worker vanished: another may probe
    assert breaker.admit(probing, policy, clock.now()).probe


def test_a_probe_success_closes_it_and_a_probe_failure_opens_it_again() -> None:
    policy, clock = Breaker(failures=1, reset=1.0, successes=2), FakeClock()
    state = run(BreakerState("t", version=7), policy, "f", clock.now())
    clock.advance(1)
    probing = breaker.probing(state, policy, clock.now(), 5.0)
    assert probing is not None
    once = breaker.record(probing, policy, False, clock.now())
    assert once.circuit is Circuit.HALF_OPEN and once.successes == 1 and breaker.admit(once, policy, clock.now()).probe
    again = breaker.probing(once, policy, clock.now(), 5.0)
    assert again is not None
    assert breaker.record(again, policy, False, clock.now()) == BreakerState("t", version=7)
    reopened = breaker.record(again, policy, True, clock.now())
    assert reopened.circuit is Circuit.OPEN and reopened.opened_at == clock.now()


def test_forced_open_stays_open_past_reset() -> None:
    policy = Breaker(reset=1.0)
    state = breaker.opened(BreakerState("t"), 0.0, forced=True)
    verdict = breaker.admit(state, policy, 1000.0)
    assert not verdict.run and not verdict.probe and verdict.delay == 1.0


def test_outcomes_in_flight_while_open_change_nothing() -> None:
    policy = Breaker(failures=1)
    state = breaker.opened(BreakerState("t"), 5.0)
    assert breaker.record(state, policy, True, 9.0) == state
    assert not breaker.relevant(state, True)


def test_only_outcomes_that_change_the_state_are_relevant() -> None:
    policy = Breaker(failures=5)
    healthy = BreakerState("t")
    assert not breaker.relevant(healthy, False)
    assert breaker.record(healthy, policy, False, 0.0) == healthy  # so skipping it loses nothing
    assert breaker.relevant(healthy, True)
    assert breaker.relevant(run(healthy, policy, "f", 0.0), False)


def test_the_state_round_trips_through_json() -> None:
    state = BreakerState("t", Circuit.HALF_OPEN, 2, "0101", 1.5, 1, 2.25, True, 3)
    assert BreakerState.from_json("t", state.to_json(), 3) == state


@pytest.mark.parametrize("options", [{"failures": 0}, {"ratio": 1.5}, {"window": 0}, {"reset": 0.0},
                                     {"reset": float("nan")}, {"successes": 0}, {"failures": -1}])
def test_bad_policies_are_refused(options: dict[str, float]) -> None:
    with pytest.raises(ConfigurationError):
        Breaker(**options)  # type: ignore[arg-type]

"""Circuit breakers: the pure state machine (pybreaker's semantics, no I/O, time passed in).

A breaker guards one task type, or several that share a name (`@task(..., breaker=Breaker(name="payments"))`).
Closed, it lets every task run and counts outcomes; after `failures` consecutive failures, or a failure `ratio`
over the last `window` outcomes, it opens. Open, workers give its tasks back unrun (their attempt is not used)
until `reset` seconds have passed; then it is half-open and lets one probe run at a time. `successes` probes that
succeed close it; a probe that fails opens it again. An admin may force it open (it stays open until closed) or
close it.

The state lives in the backend (BreakerStore) so every worker agrees; it is written by compare-and-set on
`version`, so this module only says what the next state is. Times (opened_at, probe_until) are the backend's.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from hexq.core.errors import ConfigurationError

MAX_WINDOW = 1000  # outcomes a ratio window may hold: the state is stored whole on every write


class Circuit(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class Breaker:
    """A task type's breaker policy (exported as hexq.Breaker).

    failures: consecutive failures that open it (0: not counted). ratio: the failed share of the last `window`
    outcomes that opens it, once `window` outcomes are known (0: not counted). reset: seconds it stays open before
    a probe. successes: probes that must succeed in a row to close it. name: shared by the types that name it;
    None is the type's own.
    """

    failures: int = 5
    ratio: float = 0.0
    window: int = 20
    reset: float = 30.0
    successes: int = 1
    name: str | None = None

    def __post_init__(self) -> None:
        if self.failures < 0 or not 0.0 <= self.ratio <= 1.0 or not (self.failures or self.ratio):
            raise ConfigurationError("breaker: failures >= 0 and 0 <= ratio <= 1, and one of them above 0")
        if not 1 <= self.window <= MAX_WINDOW or self.successes < 1:
            raise ConfigurationError(f"breaker: window must be 1..{MAX_WINDOW} and successes at least 1")
        if not (math.isfinite(self.reset) and self.reset > 0):
            raise ConfigurationError("breaker: reset must be a number of seconds above 0")


@dataclass(frozen=True, slots=True)
class BreakerState:
    """A breaker as stored. `recent`: the last outcomes, oldest first, '1' failed and '0' succeeded (a window of
    successes only is kept empty: it cannot open anything). `version`: the store's, 0 when never stored."""

    name: str
    circuit: Circuit = Circuit.CLOSED
    failures: int = 0
    recent: str = ""
    opened_at: float = 0.0
    successes: int = 0
    probe_until: float = 0.0
    forced: bool = False
    version: int = 0

    def to_json(self) -> str:
        return json.dumps({"circuit": self.circuit.value, "failures": self.failures, "recent": self.recent,
                           "opened_at": self.opened_at, "successes": self.successes,
                           "probe_until": self.probe_until, "forced": self.forced}, separators=(",", ":"))

    @classmethod
    def from_json(cls, name: str, text: str, version: int) -> BreakerState:
        data: dict[str, Any] = json.loads(text)
        return cls(name, Circuit(data["circuit"]), int(data["failures"]), str(data["recent"]),
                   float(data["opened_at"]), int(data["successes"]), float(data["probe_until"]),
                   bool(data["forced"]), version)


@dataclass(frozen=True, slots=True)
class Admission:
    """What a worker does with a claimed task of a breaker's type: run it, try to become the probe, or give it
    back for `delay` seconds (when the breaker may let one through)."""

    run: bool
    probe: bool = False
    delay: float = 0.0


RUN = Admission(True)


def admit(state: BreakerState, policy: Breaker, now: float) -> Admission:
    if state.circuit is Circuit.CLOSED:
        return RUN
    if state.forced:
        return Admission(False, delay=policy.reset)
    if state.circuit is Circuit.OPEN and now < state.opened_at + policy.reset:
        return Admission(False, delay=state.opened_at + policy.reset - now)
    if state.circuit is Circuit.HALF_OPEN and now < state.probe_until:
        # Not until the probe's deadline (a task's timeout, maybe minutes): a probe that succeeds sooner
        # closes it, and its held tasks should not wait on.
        return Admission(False, delay=min(state.probe_until - now, policy.reset))
    return Admission(False, probe=True)


def probing(state: BreakerState, policy: Breaker, now: float, seconds: float) -> BreakerState | None:
    """The state with this worker's probe in flight for up to `seconds`, or None if no probe may start now."""
    if not admit(state, policy, now).probe:
        return None
    successes = state.successes if state.circuit is Circuit.HALF_OPEN else 0
    return replace(state, circuit=Circuit.HALF_OPEN, successes=successes, probe_until=now + seconds)


def record(state: BreakerState, policy: Breaker, failed: bool, now: float) -> BreakerState:
    """The state after one outcome of the breaker's tasks."""
    if state.circuit is Circuit.OPEN:
        return state  # a task that began before it opened: its outcome says nothing new
    if state.circuit is Circuit.HALF_OPEN:
        if failed:
            return opened(state, now)
        successes = state.successes + 1
        if successes >= policy.successes:
            return closed(state)
        return replace(state, successes=successes, probe_until=0.0)
    failures = state.failures + 1 if failed else 0
    recent = (state.recent + ("1" if failed else "0"))[-policy.window:]
    if "1" not in recent:
        recent = ""
    after = replace(state, failures=failures, recent=recent)
    return opened(after, now) if _trips(after, policy) else after


def relevant(state: BreakerState, failed: bool) -> bool:
    """Whether an outcome would change `state`: a worker writes only those (a success of a healthy type is free)."""
    if state.circuit is Circuit.OPEN:
        return False
    return failed or state.circuit is Circuit.HALF_OPEN or state.failures > 0 or "1" in state.recent


def opened(state: BreakerState, now: float, *, forced: bool = False) -> BreakerState:
    return replace(state, circuit=Circuit.OPEN, opened_at=now, successes=0, probe_until=0.0, forced=forced,
                   failures=0, recent="")


def closed(state: BreakerState) -> BreakerState:
    return BreakerState(state.name, version=state.version)


def _trips(state: BreakerState, policy: Breaker) -> bool:
    if policy.failures and state.failures >= policy.failures:
        return True
    n = len(state.recent)
    return bool(policy.ratio) and n >= policy.window and state.recent.count("1") / n >= policy.ratio


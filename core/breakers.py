"""The breaker service: list circuit breakers, and open or close one by hand. What the API, the clients and the
CLI share (the workers move breakers themselves: hexq.core.circuits)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hexq.core import breaker
from hexq.core.breaker import Breaker, BreakerState, Circuit
from hexq.core.errors import BackendUnavailable
from hexq.core.ports import BreakerStore
from hexq.core.registry import Registry, check_name

_Change = Callable[[BreakerState, float], BreakerState]  # an admin's change, given the state and the backend's now
TRIES = 10  # compare-and-set rounds an admin's change gets against workers writing the same breaker


@dataclass(frozen=True, slots=True)
class BreakerInfo:
    """One breaker as GET /v1/breakers shows it. `types`: the task types this process knows that use it;
    `reopens_at`: when an open breaker lets a probe through (None when forced open, or not open);
    `failures` and `recent`: what it has counted while closed."""

    name: str
    state: Circuit
    forced: bool = False
    opened_at: float | None = None
    reopens_at: float | None = None
    failures: int = 0
    recent_failures: int = 0
    recent: int = 0
    types: tuple[str, ...] = ()
    policy: Breaker | None = None


class BreakerService:
    """Raises ValidationError for a name that cannot be a breaker's, BackendUnavailable from the backend."""

    def __init__(self, store: BreakerStore, registry: Registry) -> None:
        self._store = store
        self._registry = registry

    async def breakers(self) -> list[BreakerInfo]:
        """Every stored breaker and every one the registry declares (closed until stored), by name."""
        _, stored = await self._store.breaker_states()
        states = {state.name: state for state in stored}
        for name in self._registry.breakers():
            states.setdefault(name, BreakerState(name))
        return [self._info(state) for _, state in sorted(states.items())]

    async def open(self, name: str) -> BreakerInfo:
        """Force it open now: workers give its tasks back until it is closed (no probe goes by itself)."""
        return await self._change(check_name(name, "breaker"), lambda s, now: breaker.opened(s, now, forced=True))

    async def close(self, name: str) -> BreakerInfo:
        """Close it now, forgetting what it counted: its tasks run again (held ones when their delay ends)."""
        return await self._change(check_name(name, "breaker"), lambda s, _: breaker.closed(s))

    async def _change(self, name: str, how: _Change) -> BreakerInfo:
        for _ in range(TRIES):
            now, stored = await self._store.breaker_states()
            state = next((s for s in stored if s.name == name), BreakerState(name))
            written = await self._store.put_breaker(how(state, now))
            if written is not None:
                return self._info(written)
        raise BackendUnavailable("breakers", f"breaker {name!r} changed under every one of {TRIES} writes")

    def _info(self, state: BreakerState) -> BreakerInfo:
        declared = self._registry.breakers()
        policy = declared.get(state.name)
        types = tuple(spec.name for spec in self._registry if spec.breaker is not None
                      and spec.breaker_name == state.name)
        is_open = state.circuit is not Circuit.CLOSED
        reopens = state.opened_at + policy.reset if policy and state.circuit is Circuit.OPEN and not state.forced \
            else None
        return BreakerInfo(state.name, state.circuit, state.forced, state.opened_at if is_open else None, reopens,
                           state.failures, state.recent.count("1"), len(state.recent), types, policy)

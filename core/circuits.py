"""One worker's view of its task types' circuit breakers, and the writer of the outcomes that move them.

The hot path stays cheap: a claimed task of a type whose breaker is closed costs a dict lookup. The stored
states are read once every REFRESH seconds by a background task (so no task waits for a read), and an outcome
is written only when it would change the state (hexq.core.breaker.relevant): a failure, or a success after
failures. Those are written by one background task, a batch per breaker per round trip, by compare-and-set: a
writer that lost reads again and decides again, so every worker's outcomes count once.

What it costs in agreement: a worker's copy may be up to REFRESH seconds old, so for that long it may run tasks
of a breaker another worker opened (their outcomes are then ignored), and a success it saw as "nothing to
change" may miss a consecutive-failure count another worker just raised. Opening and probing are exact: both
go through compare-and-set on the stored state.

Times in the states are the backend's: each read also returns the backend's clock, and this worker measures
"now" as its own clock plus the difference it saw, so a host whose clock is off still reopens on time.
"""

from __future__ import annotations

import asyncio
import logging

from hexq.core import breaker
from hexq.core.breaker import RUN, Admission, Breaker, BreakerState, Circuit
from hexq.core.errors import BackendUnavailable
from hexq.core.events import NO_EVENTS, Events
from hexq.core.ports import BreakerStore, Clock

log = logging.getLogger("hexq.breakers")

REFRESH = 1.0  # seconds a worker trusts its copy of the stored states
TRIES = 5  # compare-and-set rounds one write gets before it gives up (a busy breaker: the next outcome retries)
MIN_HOLD = 0.5  # seconds a held task waits at least, so a breaker about to half-open is not a claim loop


class Circuits:
    def __init__(self, store: BreakerStore, clock: Clock, events: Events = NO_EVENTS, *,
                 refresh: float = REFRESH) -> None:
        self._store = store
        self._clock = clock
        self._events = events
        self._refresh_every = refresh
        self._states: dict[str, BreakerState] = {}
        self._offset = 0.0  # the backend's clock less this process's, at the last read
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[str, tuple[Breaker, list[bool]]] = {}
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Read the states once (so the first tasks see an open breaker), then write outcomes in the background."""
        await self._read_quietly()
        self._writer = asyncio.create_task(self._write_loop())
        self._reader = asyncio.create_task(self._read_loop())

    async def close(self) -> None:
        """Write what is pending, then stop."""
        for task in (self._writer, self._reader):
            if task is not None:
                task.cancel()
        if self._pending:
            await self._write_quietly()

    def state(self, name: str) -> BreakerState:
        state = self._states.get(name)
        if state is None:  # never stored: closed. Kept, as making a BreakerState costs more than the lookup
            state = self._states[name] = BreakerState(name)
        return state

    def now(self) -> float:
        """Now on the backend's clock, as well as this process can tell."""
        return self._clock.now() + self._offset

    def closed(self, name: str) -> bool:
        """The hot path: whether the breaker is closed as far as this worker knows (then the task just runs)."""
        state = self._states.get(name)
        return state is None or state.circuit is Circuit.CLOSED

    async def admit(self, name: str, policy: Breaker, probe_seconds: float) -> Admission:
        """Whether to run a claimed task now (as the probe, maybe), or give it back for Admission.delay seconds."""
        state = self.state(name)
        if state.circuit is Circuit.CLOSED:
            return RUN
        verdict = breaker.admit(state, policy, self.now())
        if verdict.probe:
            verdict = await self._probe(name, policy, probe_seconds)
        return verdict if verdict.run else Admission(False, delay=max(verdict.delay, MIN_HOLD))

    def record(self, name: str, policy: Breaker, failed: bool) -> None:
        """An attempt of the breaker's type ended: failed or succeeded. Written in the background if it matters."""
        state = self.state(name)
        if not failed and state.circuit is Circuit.CLOSED and not state.failures and not state.recent:
            return  # the hot path: a success of a healthy type changes nothing (breaker.relevant, inlined)
        if not breaker.relevant(state, failed):
            return
        pending = self._pending.get(name)
        if pending is None:
            pending = self._pending[name] = (policy, [])
        pending[1].append(failed)
        self._wake.set()

    async def _probe(self, name: str, policy: Breaker, seconds: float) -> Admission:
        try:
            for _ in range(TRIES):
                state, now = self.state(name), self.now()
                wanted = breaker.probing(state, policy, now, seconds)
                if wanted is None:
                    return breaker.admit(state, policy, now)
                if await self._put(wanted) is not None:
                    return Admission(True, probe=True)
                await self._read()
        except BackendUnavailable as exc:
            log.warning("breaker %s: probe could not be started: %s", name, exc)
        return Admission(False, delay=MIN_HOLD)

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._write_quietly()

    async def _write_quietly(self) -> None:
        try:
            await self._write()
        except BackendUnavailable as exc:  # a breaker is advice: the tasks go on, and later outcomes count
            log.warning("breaker outcomes could not be written: %s", exc)

    async def _write(self) -> None:
        pending, self._pending = self._pending, {}
        for name, (policy, outcomes) in pending.items():
            for _ in range(TRIES):
                state, now = self.state(name), self.now()
                after = state
                for failed in outcomes:
                    after = breaker.record(after, policy, failed, now)
                if after == state or await self._put(after) is not None:
                    break
                await self._read()

    async def _put(self, state: BreakerState) -> BreakerState | None:
        stored = await self._store.put_breaker(state)
        if stored is not None:
            before = self.state(state.name)
            self._states[state.name] = stored
            if before.circuit is not stored.circuit:
                self._events.circuit_changed(state.name, before.circuit.value, stored.circuit.value)
        return stored

    async def _read_loop(self) -> None:
        while True:
            await self._clock.sleep(self._refresh_every)
            await self._read_quietly()

    async def _read_quietly(self) -> None:
        try:
            await self._read()
        except BackendUnavailable as exc:
            log.warning("breaker states could not be read: %s", exc)

    async def _read(self) -> None:
        now, states = await self._store.breaker_states()
        self._offset = now - self._clock.now()
        self._states = {state.name: state for state in states}

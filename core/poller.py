"""The poller tick: promote due tasks, recover expired leases, fire schedules, purge old results,
and start ceil(backlog / batch) worker invocations up to a cap. That is how the number of
workers follows the backlog.

Between ticks a `wake` event (set by `hexq serve` on a submit, or when an invocation ends) sizes the
invocations at once, without the housekeeping: a submit need not wait for the next tick.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass

from hexq.core import outcome
from hexq.core.errors import BackendUnavailable
from hexq.core.events import NO_EVENTS, Events
from hexq.core.model import Lease, Settlement, Task
from hexq.core.ports import Broker, Invoker, Sweeper
from hexq.core.schedules import ScheduleService

log = logging.getLogger("hexq.poller")


@dataclass(frozen=True, slots=True)
class PollerConfig:
    interval: float = 0.5
    batch: int = 10
    max_invocations: int = 4
    lease_seconds: float = 30.0
    sweep_limit: int = 1000
    retention: float = 7 * 86_400.0


@dataclass(frozen=True, slots=True)
class TickReport:
    promoted: int = 0
    recovered: int = 0
    fired: int = 0
    purged: int = 0
    backlog: int = 0
    invoked: int = 0


class Poller:
    """The two ports it uses: the sweeper for housekeeping, the broker to settle the leases it takes over."""

    def __init__(self, sweeper: Sweeper, broker: Broker, schedules: ScheduleService, config: PollerConfig,
                 invoker: Invoker | None = None, events: Events = NO_EVENTS) -> None:
        self._sweeper = sweeper
        self._events = events
        self._broker = broker
        self._schedules = schedules
        self._config = config
        self._invoker = invoker

    async def tick(self) -> TickReport:
        limit = self._config.sweep_limit
        promoted = await self._sweeper.promote_due(limit)
        recovered = await self._recover()
        fired = await self._schedules.fire_due()
        purged = await self._sweeper.purge_finished(self._config.retention, limit)
        backlog = await self._sweeper.backlog()
        invoked = await self._invoke(backlog)
        return TickReport(promoted, recovered, fired, purged, backlog, invoked)

    async def invoke(self) -> int:
        """Start the invocations the backlog needs now (the tick's last step on its own)."""
        return await self._invoke(await self._sweeper.backlog())

    async def run(self, stop: asyncio.Event, wake: asyncio.Event | None = None) -> None:
        """Tick every `interval` until `stop` is set; whenever `wake` is set in between, `invoke` at once."""
        wake = wake or asyncio.Event()
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            await self._guarded(self._logged_tick)
            next_tick = loop.time() + self._config.interval
            while await _woken(stop, wake, next_tick - loop.time()):
                wake.clear()  # before invoking: a wake that comes during it is served by the next round
                await self._guarded(self.invoke)

    async def _logged_tick(self) -> None:
        report = await self.tick()
        if report != TickReport(backlog=report.backlog, invoked=report.invoked):
            log.info("tick", extra=asdict(report))  # each figure a JSON field, not a repr in the message

    @staticmethod
    async def _guarded(step: Callable[[], Awaitable[object]]) -> None:
        try:
            await step()
        except BackendUnavailable as exc:
            log.warning("poller tick failed: %s", exc)
        except Exception:  # a bug or a bad record must not end the poller: the next tick tries again
            log.exception("poller tick failed")

    async def _recover(self) -> int:
        """A lease that expired means a worker died or hung: that counts as a failed attempt."""
        leases = await self._sweeper.reclaim_expired(self._config.sweep_limit, self._config.lease_seconds)
        if not leases:
            return 0
        # A task cancelled while its worker was lost ends cancelled rather than running again.
        settlements = [Settlement(lease, _ended(lease, self._config.lease_seconds)) for lease in leases]
        applied = await self._broker.settle(settlements)
        await self._sweeper.promote_due(len(settlements))  # due now: back in the queue this tick
        for settlement, done in zip(settlements, applied, strict=True):
            if done:
                self._events.recovered(settlement.task)
        return sum(applied)

    async def _invoke(self, backlog: int) -> int:
        # Asked even for none: an invoker that keeps warm invocations waiting (hexq serve's pool) tops them up.
        if self._invoker is None:
            return 0
        wanted = min(math.ceil(backlog / self._config.batch), self._config.max_invocations)
        return await self._invoker.trigger(wanted)


def _ended(lease: Lease, lease_seconds: float) -> Task:
    """The outcome of a task whose lease expired, its attempt ended when the poller took it over: the fresh
    lease's expiry less its length is that moment on the backend's clock. The lost lease's token is not
    known (the fresh one fences it out), so the attempt has none."""
    task = lease.task
    after = outcome.cancelled(task) if lease.cancel_requested else outcome.lost(task)
    return outcome.ended(task, after, None, at=lease.expires_at - lease_seconds)


async def _woken(stop: asyncio.Event, wake: asyncio.Event, seconds: float) -> bool:
    """Wait up to `seconds` for `stop` or `wake`; True if `wake` came first."""
    if seconds <= 0 or stop.is_set():
        return False
    if not wake.is_set():
        waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
    return wake.is_set() and not stop.is_set()

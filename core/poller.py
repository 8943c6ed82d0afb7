"""The poller tick: promote due tasks, recover expired leases, fire schedules, purge old results,
and start ceil(backlog / batch) worker invocations up to a cap. That is how the number of
workers follows the backlog.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass

from hexq.core import outcome
from hexq.core.errors import BackendUnavailable
from hexq.core.model import Settlement
from hexq.core.ports import Backend, Invoker
from hexq.core.registry import Registry
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
    def __init__(self, backend: Backend, schedules: ScheduleService, registry: Registry,
                 config: PollerConfig, invoker: Invoker | None = None) -> None:
        self._backend = backend
        self._schedules = schedules
        self._registry = registry
        self._config = config
        self._invoker = invoker

    async def tick(self) -> TickReport:
        limit = self._config.sweep_limit
        promoted = await self._backend.promote_due(limit)
        recovered = await self._recover()
        fired = await self._schedules.fire_due()
        purged = await self._backend.purge_finished(self._config.retention, limit)
        backlog = await self._backend.backlog()
        invoked = await self._invoke(backlog)
        return TickReport(promoted, recovered, fired, purged, backlog, invoked)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                report = await self.tick()
                if report != TickReport(backlog=report.backlog, invoked=report.invoked):
                    log.info("tick %s", report)
            except BackendUnavailable as exc:
                log.warning("poller tick failed: %s", exc)
            except Exception:  # a bug or a bad record must not end the poller: the next tick tries again
                log.exception("poller tick failed")
            try:
                await asyncio.wait_for(stop.wait(), timeout=self._config.interval)
            except TimeoutError:
                pass

    async def _recover(self) -> int:
        """A lease that expired means a worker died or hung: that counts as a failed attempt."""
        leases = await self._backend.reclaim_expired(self._config.sweep_limit, self._config.lease_seconds)
        if not leases:
            return 0
        settlements = [Settlement(lease, outcome.lost(lease.task)) for lease in leases]
        applied = sum(await self._backend.settle(settlements))
        await self._backend.promote_due(len(settlements))  # due now: back in the queue this tick
        return applied

    async def _invoke(self, backlog: int) -> int:
        if self._invoker is None or backlog == 0:
            return 0
        wanted = min(math.ceil(backlog / self._config.batch), self._config.max_invocations)
        return await self._invoker.trigger(wanted)

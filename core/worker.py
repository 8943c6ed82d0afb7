"""One worker invocation: claim, run concurrently with a timeout each, heartbeat, settle, stop.

An invocation stops claiming when the queue stays empty for `idle_wait`, when its time
budget is spent, or when `stop` is set. What is still running then is given `grace` seconds and
then released (re-queued at once rather than left for lease expiry).

Round trips. A claim waits until half the slots are free (or a free slot has waited LINGER), so a
busy worker claims in batches rather than once per finished task. Settles are batched by AckBuffer;
where the backend has SettleAndClaim, each settle also claims for the slots it frees, so a worker that
keeps its slots full pays one round trip per batch. Every wait is on the Clock port.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from hexq.core import outcome
from hexq.core.acks import AckBuffer
from hexq.core.circuits import Circuits
from hexq.core.clock import SystemClock
from hexq.core.errors import BackendUnavailable
from hexq.core.events import NO_EVENTS, Events
from hexq.core.model import Lease, Settlement, Task, WorkerInfo
from hexq.core.ports import BreakerStore, Broker, Clock, RateLimiter, SettleAndClaim, WorkerRegistry
from hexq.core.registry import Registry
from hexq.core.running import Runner, Running, log

LINGER = 0.005  # seconds a free slot waits for half the slots to be free before it is claimed alone
BEAT_EVERY = 5.0  # seconds between a worker's beats to the WorkerRegistry
BEAT_TTL = 3 * BEAT_EVERY  # a worker that misses two beats in a row is listed no more


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    worker_id: str
    queues: tuple[str, ...] = ("default",)
    concurrency: int = 10
    lease_seconds: float = 30.0
    idle_wait: float = 1.0
    budget: float = 60.0
    grace: float = 10.0


_COUNTED = {"succeeded": "succeeded", "scheduled": "retried", "dead": "dead", "queued": "released"}


@dataclass(slots=True)
class Report:
    worker_id: str
    claimed: int = 0
    succeeded: int = 0
    retried: int = 0
    dead: int = 0
    released: int = 0
    deferred: int = 0  # given back with the attempt unused: the handler raised Retry, or its breaker is open
    stale: int = 0
    seconds: float = 0.0
    reason: str = ""

    def count(self, task: Task) -> None:
        attr = _COUNTED.get(task.status.value)
        if attr:
            setattr(self, attr, getattr(self, attr) + 1)


@dataclass
class Invocation:
    """Build it through the composition root (hexq.functions.bootstrap.Container.invocation), so that no
    entry point can leave out a dependency (the rate limiter, say)."""

    broker: Broker
    registry: Registry
    config: WorkerConfig
    rand: Callable[[], float] = random.random
    limiter: RateLimiter | None = None
    clock: Clock = field(default_factory=SystemClock)
    events: Events = NO_EVENTS
    workers: WorkerRegistry | None = None  # where this worker says it is alive (for metrics and GET /v1/workers)
    host_pid: tuple[str, int] = ("", 0)  # what it says it runs on
    breakers: BreakerStore | None = None  # where the registry's circuit breakers are kept (hexq.core.circuits)
    report: Report = field(init=False)
    _runner: Runner = field(init=False)
    _acks: AckBuffer = field(init=False)
    _stop: asyncio.Event = field(init=False)
    _both: SettleAndClaim | None = field(init=False)
    _circuits: Circuits | None = None
    _reserved: int = 0  # slots a claim in flight may fill
    _closing: bool = False  # no more claims
    _poked: asyncio.Future[bool] | None = None

    async def run(self, stop: asyncio.Event | None = None) -> Report:
        stop = self._stop = stop or asyncio.Event()
        report = self.report = Report(self.config.worker_id)
        if self.breakers is not None and self.registry.breakers():  # no breaker declared: nothing read or written
            self._circuits = Circuits(self.breakers, self.clock, self.events)
            await self._circuits.start()
        self._runner = Runner(self.registry, self.clock, self.rand, self.limiter, self._finished, report,
                              self.events, self._circuits)
        self._acks = AckBuffer(self._send, self._settled, self.clock)
        self._both = _settle_and_claim(self.broker)
        started = self.clock.monotonic()
        helpers = [asyncio.ensure_future(stop.wait()), asyncio.create_task(self._runner.deadlines.run()),
                   asyncio.create_task(self._runner.heartbeat(self.broker, self.config.lease_seconds))]
        helpers[0].add_done_callback(lambda _: self._poke())
        if self.workers is not None:
            helpers.append(asyncio.create_task(self._beats(self.workers)))
        self._acks.start()
        try:
            report.reason = await self._claim_loop(report, stop, started + self.config.budget)
            self._closing = True
            await self._drain()
        finally:
            self._closing = True
            for helper in helpers:
                helper.cancel()
            await self._acks.close()
            if self._circuits is not None:
                await self._circuits.close()
            if stop.is_set():
                # The process is stopping. An invocation that ended on its own (empty queue, budget) does not
                # leave: the process's next one beats on under the same id (keeping started_at), and if none
                # comes the registry forgets it after BEAT_TTL.
                await self._leave()
        report.seconds = self.clock.monotonic() - started
        return report

    async def _claim_loop(self, report: Report, stop: asyncio.Event, deadline: float) -> str:
        backoff = 0.05
        free_since: float | None = None  # when a slot became free while fewer than half were
        half = (self.config.concurrency + 1) // 2
        while not stop.is_set():
            now = self.clock.monotonic()
            remaining = deadline - now
            if remaining <= 0:
                return "budget"
            free = self._free()
            if free < half:
                free_since = None if free == 0 else now if free_since is None else free_since
                wait = remaining if free_since is None else free_since + LINGER - now
                if wait > 0:
                    await self._nap(min(wait, remaining))
                    continue
            free_since = None
            # While tasks run, a claim must wait a little even if idle_wait is 0, or this loop would
            # spin without ever letting the running handlers have the event loop.
            wait = self.config.idle_wait if not self._runner.entries else max(self.config.idle_wait, 0.05)
            self._reserved += free
            try:
                leases = await self.broker.claim(
                    self.config.queues, free, lease_seconds=self.config.lease_seconds,
                    worker_id=self.config.worker_id, wait=min(wait, remaining))
            except BackendUnavailable as exc:  # workers outlive backend outages; they retry with backoff
                log.warning("claim failed, retrying in %.2fs: %s", backoff, exc)
                await self._pause(stop, backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            finally:
                self._reserved -= free
            backoff = 0.05
            if not leases and not self._runner.entries:
                return "empty"
            self._take(leases)
        return "stopped"

    async def _beats(self, workers: WorkerRegistry) -> None:
        """Beat every BEAT_EVERY seconds until cancelled. A beat that fails is logged: it never fails a task."""
        host, pid = self.host_pid
        while True:
            info = WorkerInfo(self.config.worker_id, host, pid, self.config.queues, running=len(self._runner.entries))
            try:
                await workers.beat(info, BEAT_TTL)
            except Exception as exc:  # the registry is for observers: the tasks go on
                log.warning("worker beat failed: %s", exc)
            await self.clock.sleep(BEAT_EVERY)

    async def _leave(self) -> None:
        if self.workers is not None:
            try:
                await self.workers.leave(self.config.worker_id)
            except Exception as exc:  # as a beat: its expiry forgets the worker anyway
                log.warning("worker leave failed: %s", exc)

    def _free(self) -> int:
        return self.config.concurrency - len(self._runner.entries) - self._reserved

    def _take(self, leases: list[Lease]) -> None:
        self.report.claimed += len(leases)
        for lease in leases:
            self._runner.start(lease)

    async def _send(self, batch: list[Settlement]) -> list[bool]:
        """Settle `batch`; where the backend can, claim in the same round trip for the slots it frees."""
        both = self._both
        n = 0 if self._closing or self._stop.is_set() else self._free() + len(batch)
        if n <= 0 or both is None:
            return await self.broker.settle(batch)
        self._reserved += n
        try:
            applied, leases = await both.settle_and_claim(
                batch, self.config.queues, n, lease_seconds=self.config.lease_seconds,
                worker_id=self.config.worker_id)
        finally:
            self._reserved -= n
        self._take(leases)
        return applied

    def _finished(self, entry: Running, settle: Settlement | None) -> None:
        """An attempt ended: its settlement goes into the next batch (the entry keeps its slot and its
        heartbeat until the settle lands), or, when its lease was lost, the slot is free now."""
        if settle is None:
            self._release(entry.lease.task.id)
        else:
            self._acks.put(settle)

    def _settled(self, settlement: Settlement, applied: bool | None) -> None:
        if applied and outcome.given_back(settlement.lease.task, settlement.task):
            self.report.deferred += 1
            reason = "retry" if settlement.task.history is not settlement.lease.task.history else "breaker"
            self.events.deferred(settlement.lease.task, settlement.task, reason)
        elif applied:
            self.report.count(settlement.task)
            entry = self._runner.entries.get(settlement.task.id)
            self.events.finished(settlement.lease.task, settlement.task, entry.seconds if entry else 0.0)
        elif applied is False:
            self.report.stale += 1
            self.events.fenced("settle", settlement.lease.task)
            log.warning("task %s: lease was lost before settling; another worker owns it", settlement.task.id)
        self._release(settlement.task.id)

    def _release(self, task_id: str) -> None:
        self._runner.entries.pop(task_id, None)
        self._poke()

    async def _drain(self) -> None:
        # The budget bounds claiming; in-flight tasks then get `grace` to finish, so an invocation
        # lasts at most budget + grace (the Lambda entry point sizes both from its deadline).
        end = self.clock.monotonic() + self.config.grace
        while (jobs := self._runner.unfinished()) or self._reserved:
            left = end - self.clock.monotonic()
            if left <= 0:
                break
            if not jobs:  # a claim in flight: its leases run too
                await self._nap(left)
                continue
            everything = asyncio.ensure_future(asyncio.wait(jobs))
            sleeper = asyncio.ensure_future(self.clock.sleep(left))
            await asyncio.wait((everything, sleeper), return_when=asyncio.FIRST_COMPLETED)
            everything.cancel()
            sleeper.cancel()
        await self._runner.stop_all()

    async def _nap(self, seconds: float) -> bool:
        """Until _poke() (a slot freed, stop) or `seconds` pass on the clock; True if the time passed."""
        poked: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._poked = poked
        alarm = asyncio.create_task(self._alarm(poked, seconds))
        try:
            return await poked
        finally:
            alarm.cancel()
            self._poked = None

    async def _alarm(self, poked: asyncio.Future[bool], seconds: float) -> None:
        await self.clock.sleep(seconds)
        if not poked.done():
            poked.set_result(True)

    def _poke(self) -> None:
        if self._poked is not None and not self._poked.done():
            self._poked.set_result(False)

    async def _pause(self, stop: asyncio.Event, seconds: float) -> None:
        end = self.clock.monotonic() + seconds
        while not stop.is_set() and (left := end - self.clock.monotonic()) > 0:
            await self._nap(left)


def _settle_and_claim(broker: Broker) -> SettleAndClaim | None:
    """The broker, if it settles and claims in one round trip. Looked up on its class: a wrapper that forwards
    by __getattr__ (to count settles, say) gets the plain settle it knows about, not a call that goes around it."""
    if callable(getattr(type(broker), "settle_and_claim", None)) and isinstance(broker, SettleAndClaim):
        return broker
    return None

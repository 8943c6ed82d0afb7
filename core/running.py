"""The tasks one invocation holds: start each attempt, time it out, cancel or lose it, heartbeat the leases.

The per-task path is kept short on purpose (a no-op task costs a few microseconds here): each type's
handler facts are looked up once per invocation (_Plan), limits are skipped for types without any, a
timeout is a heap entry (hexq.core.timeouts) rather than a timer, and a result that is plainly JSON is
not serialised to find out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

from hexq.core import context, outcome
from hexq.core.breaker import Breaker
from hexq.core.circuits import Circuits
from hexq.core.errors import BackendUnavailable, UnknownTaskType
from hexq.core.events import NO_EVENTS, Events
from hexq.core.model import JSON, Lease, Settlement, Task, TaskStatus
from hexq.core.ports import Broker, Clock, RateLimiter
from hexq.core.registry import Registry, TaskSpec
from hexq.core.retry import DEFAULT_RETRY, Retry
from hexq.core.timeouts import Deadlines

log = logging.getLogger("hexq.worker")

Finished = Callable[["Running", Settlement | None], None]
"""An attempt ended: its settlement, or None when the lease was lost (nothing may be written)."""


class Counts(Protocol):
    stale: int  # leases found lost


@dataclass(slots=True)
class Running:
    lease: Lease
    context: context.RunningTask
    job: asyncio.Task[None] | None = None
    started: bool = False  # its job has begun: before that, cancelling the job would skip its settle
    lost: bool = False
    cancelling: bool = False  # its cancellation was requested: whatever the attempt does, it ends cancelled
    stopped: bool = False  # shutdown: released unless it finished within the grace
    timing: bool = False  # its timeout is armed (hexq.core.timeouts.Timed)
    timed_out: bool = False
    seconds: float = 0.0  # how long the attempt ran, once it has ended

    def expire(self) -> None:
        self.timed_out = True
        if self.job is not None:
            self.job.cancel()


@dataclass(frozen=True, slots=True)
class _Plan:
    spec: TaskSpec
    is_async: bool
    limited: bool  # a concurrency cap or a rate to wait for
    breaker: Breaker | None  # its circuit breaker, where this worker keeps breakers (Circuits)


class Runner:
    def __init__(self, registry: Registry, clock: Clock, rand: Callable[[], float], limiter: RateLimiter | None,
                 finished: Finished, counts: Counts, events: Events = NO_EVENTS,
                 circuits: Circuits | None = None) -> None:
        self.entries: dict[str, Running] = {}
        self.deadlines = Deadlines(clock)
        self._registry = registry
        self._clock = clock
        self._rand = rand
        self._limiter = limiter
        self._finished = finished
        self._counts = counts
        self._events = events
        self._circuits = circuits
        self._plans: dict[str, _Plan] = {}
        self._type_slots: dict[str, asyncio.Semaphore] = {}

    def start(self, lease: Lease) -> None:
        entry = Running(lease, context.RunningTask(lease.task))
        self.entries[lease.task.id] = entry
        self._events.started(lease.task)
        entry.job = asyncio.create_task(self._execute(entry))
        if lease.cancel_requested:  # cancelled between a reclaim and this claim's first heartbeat
            self.cancel(entry)

    def unfinished(self) -> list[asyncio.Task[None]]:
        return [e.job for e in self.entries.values() if e.job is not None and not e.job.done()]

    async def stop_all(self) -> None:
        """Release whatever still runs (its job is cancelled; a sync handler's thread runs on unseen)."""
        jobs = []
        for entry in list(self.entries.values()):
            if entry.job is not None and not entry.job.done():
                entry.stopped = True
                if entry.started:
                    entry.job.cancel()
                jobs.append(entry.job)
        await asyncio.gather(*jobs, return_exceptions=True)

    async def _execute(self, entry: Running) -> None:
        task = entry.lease.task
        entry.started = True
        began = self._clock.monotonic()
        if entry.cancelling or entry.lost or entry.stopped:  # before it began: it never runs
            new_state = outcome.released(task)
        else:
            try:
                new_state = await self._attempt(entry)
            except asyncio.CancelledError:
                new_state = self._timed_out(task) if entry.timed_out else outcome.released(task)
            finally:
                self.deadlines.done(entry)
        if entry.cancelling:
            new_state = outcome.cancelled(task)
        entry.seconds = self._clock.monotonic() - began
        if new_state.history is not task.history:  # an attempt that did not succeed: the history says how long
            new_state = outcome.ended(task, new_state, entry.lease.token, seconds=entry.seconds)
        self._finished(entry, None if entry.lost else Settlement(entry.lease, new_state))

    async def _attempt(self, entry: Running) -> Task:
        task = entry.lease.task
        plan = self._plans.get(task.type)
        if plan is None:
            try:
                plan = self._plan(task.type)
            except UnknownTaskType as exc:  # version skew: this worker cannot run it, and retrying won't help
                return outcome.failed(task, f"unknown_task_type: {exc}", DEFAULT_RETRY, retryable=False)
        circuits = self._circuits
        if plan.breaker is not None and circuits is not None and not circuits.closed(plan.spec.breaker_name):
            held = await self._admit(task, plan.spec, plan.breaker)
            if held is not None:
                return held
        try:
            if plan.limited:
                async with self._limits(plan.spec):
                    result = await self._call(entry, plan)
            else:
                result = await self._call(entry, plan)
        except Retry as retry:  # the downstream said "slow down": neither a failure nor an attempt used
            return self._deferred(task, plan.spec, retry)
        except Exception as exc:  # a handler may raise anything; it becomes the task's error
            self._record(plan, True)
            return self._failed(task, plan.spec, f"{type(exc).__name__}: {exc}", outcome.traceback_of(exc))
        if not _plainly_json(result):
            try:
                json.dumps(result, allow_nan=False)
            except (TypeError, ValueError, RecursionError) as exc:
                # A retry cannot make the result JSON, and would run the handler's side effects again.
                error = f"result is not JSON ({exc}); the handler ran, and is not run again"
                self._record(plan, True)
                return self._failed(task, plan.spec, error, retryable=False)
        if plan.breaker is not None:  # not even a call for the types without one
            self._record(plan, False)
        return outcome.succeeded(task, result)

    async def _admit(self, task: Task, spec: TaskSpec, policy: Breaker) -> Task | None:
        """None: run it. Else the task given back unrun, because its breaker is open (or another probes it)."""
        assert self._circuits is not None  # a plan has a breaker only where there are Circuits
        verdict = await self._circuits.admit(spec.breaker_name, policy, task.timeout)
        return None if verdict.run else outcome.held(task, verdict.delay)

    def _record(self, plan: _Plan, failed: bool) -> None:
        if plan.breaker is not None and self._circuits is not None:
            self._circuits.record(plan.spec.breaker_name, plan.breaker, failed)

    def _deferred(self, task: Task, spec: TaskSpec, retry: Retry) -> Task:
        after = outcome.deferred(task, retry, spec.retry, spec.max_deferrals, rand=self._rand)
        log.info("task %s (%s) deferred: %s", task.id, task.type, retry, extra={"task_id": task.id, "type": task.type})
        return after

    async def _call(self, entry: Running, plan: _Plan) -> JSON:
        task = entry.lease.task
        self.deadlines.add(entry, task.timeout)
        context.bind(entry.context)
        payload = dict(task.payload)
        if plan.is_async:
            return await plan.spec.fn(payload)
        # Sync handlers run in a thread. A timeout stops waiting for them but cannot kill the thread.
        return await asyncio.to_thread(plan.spec.fn, payload)

    def _plan(self, name: str) -> _Plan:
        spec = self._registry.get(name)
        breaker = spec.breaker if self._circuits is not None else None
        plan = self._plans[name] = _Plan(spec, spec.is_async, bool(spec.concurrency or spec.rate), breaker)
        return plan

    @contextlib.asynccontextmanager
    async def _limits(self, spec: TaskSpec) -> AsyncIterator[None]:
        """Per-type limits, waited for while the lease is held (heartbeats keep it): a slot of the
        type's concurrency in this process, then a token of its rate from the backend's shared bucket."""
        slots = self._type_slots.get(spec.name)
        if slots is None and spec.concurrency:
            slots = self._type_slots[spec.name] = asyncio.Semaphore(spec.concurrency)
        async with slots if slots is not None else contextlib.nullcontext():
            if spec.rate and self._limiter is not None:
                await self._token(self._limiter, spec)
            yield

    async def _token(self, limiter: RateLimiter, spec: TaskSpec) -> None:
        # The bucket is shared by every worker on the backend, so there is nothing local to wait on:
        # sleep for as long as the backend says a token takes, then ask again.
        waited = 0.0
        for _ in range(1_000_000):
            wait = await limiter.acquire(f"type:{spec.name}", spec.rate, spec.burst)
            if wait <= 0:
                break
            await self._clock.sleep(wait)
            waited += wait
        if waited:
            self._events.rate_waited(spec.name, waited)

    def _timed_out(self, task: Task) -> Task:
        plan = self._plans[task.type]  # only a planned attempt has a deadline
        self._record(plan, True)
        return self._failed(task, plan.spec, f"timeout: exceeded {task.timeout:g}s")

    def _failed(self, task: Task, spec: TaskSpec, error: str, traceback: str | None = None, *,
                retryable: bool = True) -> Task:
        after = outcome.failed(task, error, spec.retry, traceback=traceback, retryable=retryable, rand=self._rand)
        then = f"retry in {after.delay:.3g}s" if after.status is TaskStatus.SCHEDULED else "dead"
        log.warning("task %s (%s) attempt %d failed, %s: %s", task.id, task.type, task.attempts, then, error,
                    extra={"task_id": task.id, "type": task.type, "attempt": task.attempts, "traceback": traceback})
        return after

    # -- what the backend says about the leases ---------------------------------------------------
    async def heartbeat(self, broker: Broker, lease_seconds: float) -> None:
        """Extend every held lease each third of a lease; stop tasks whose lease is lost or that were cancelled."""
        while True:
            await self._clock.sleep(lease_seconds / 3)
            entries = list(self.entries.values())
            if not entries:
                continue
            try:
                renewed = await broker.extend([e.lease for e in entries], lease_seconds)
            except BackendUnavailable as exc:
                log.warning("heartbeat failed: %s", exc)
                continue
            for entry, lease in zip(entries, renewed, strict=True):
                if lease is None:
                    self.lose(entry)
                else:
                    entry.lease = lease
                    if lease.cancel_requested and not entry.cancelling:
                        self.cancel(entry)

    def cancel(self, entry: Running) -> None:
        """Someone cancelled the task: an async handler is cancelled now; a sync one runs in a thread that
        cannot be stopped, so it sees current_task().cancelled and returns when it will. Either way the
        task settles as cancelled, under its lease."""
        entry.cancelling = True
        entry.context.cancel()
        task = entry.lease.task
        log.info("task %s: cancelled while running", task.id, extra={"task_id": task.id})
        plan = self._plans.get(task.type)
        if entry.job is not None and entry.started and (plan is None or plan.is_async):
            entry.job.cancel()

    def lose(self, entry: Running) -> None:
        """The lease went to someone else: stop running a task that is no longer ours."""
        entry.lost = True
        self._counts.stale += 1
        self._events.fenced("heartbeat", entry.lease.task)
        if entry.job is not None and entry.started:
            entry.job.cancel()


def _plainly_json(result: object) -> bool:
    """True for results json.dumps(allow_nan=False) surely accepts, without serialising them."""
    if result is None or type(result) is str or type(result) is bool:
        return True
    return type(result) is float and math.isfinite(result)

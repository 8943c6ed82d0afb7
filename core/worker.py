"""One worker invocation: claim, run concurrently with a timeout each, heartbeat, settle, stop.

An invocation stops claiming when the queue stays empty for `idle_wait`, when its time
budget is spent, or when `stop` is set. What is still running then is given `grace` seconds and
then released (re-queued at once rather than left for lease expiry).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from hexq.core import context, outcome
from hexq.core.acks import AckBuffer
from hexq.core.errors import BackendUnavailable, UnknownTaskType
from hexq.core.model import JSON, Lease, Settlement, Task, TaskStatus
from hexq.core.ports import Broker, RateLimiter
from hexq.core.registry import Registry, TaskSpec
from hexq.core.retry import DEFAULT_RETRY

log = logging.getLogger("hexq.worker")


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    worker_id: str
    queues: tuple[str, ...] = ("default",)
    concurrency: int = 10
    lease_seconds: float = 30.0
    idle_wait: float = 1.0
    budget: float = 60.0
    grace: float = 10.0


@dataclass(slots=True)
class Report:
    worker_id: str
    claimed: int = 0
    succeeded: int = 0
    retried: int = 0
    dead: int = 0
    released: int = 0
    stale: int = 0
    seconds: float = 0.0
    reason: str = ""

    def count(self, task: Task) -> None:
        name = {"succeeded": "succeeded", "scheduled": "retried", "dead": "dead", "queued": "released"}
        attr = name.get(task.status.value)
        if attr:
            setattr(self, attr, getattr(self, attr) + 1)


@dataclass(slots=True)
class _Running:
    lease: Lease
    running: context.RunningTask
    job: asyncio.Task[None] | None = None
    lost: bool = False
    cancelling: bool = False  # its cancellation was requested: whatever the attempt does, it ends cancelled


@dataclass
class Invocation:
    """Build it through the composition root (hexq.functions.bootstrap.Container.invocation), so that no
    entry point can leave out a dependency (the rate limiter, say)."""

    broker: Broker
    registry: Registry
    config: WorkerConfig
    rand: Callable[[], float] = random.random
    limiter: RateLimiter | None = None
    _running: dict[str, _Running] = field(default_factory=dict)
    _type_slots: dict[str, asyncio.Semaphore] = field(default_factory=dict)
    report: Report = field(init=False)
    _acks: AckBuffer = field(init=False)
    _slot_freed: asyncio.Event = field(init=False)

    async def run(self, stop: asyncio.Event | None = None) -> Report:
        stop = stop or asyncio.Event()
        report = self.report = Report(self.config.worker_id)
        self._acks = AckBuffer(self.broker, self._settled)
        self._slot_freed = asyncio.Event()
        started = time.monotonic()
        deadline = started + self.config.budget
        heartbeat = asyncio.create_task(self._heartbeat())
        self._acks.start()
        try:
            report.reason = await self._claim_loop(report, stop, deadline)
            await self._drain()
        finally:
            heartbeat.cancel()
            await self._acks.close()
        report.seconds = time.monotonic() - started
        return report

    async def _claim_loop(self, report: Report, stop: asyncio.Event, deadline: float) -> str:
        backoff = 0.05
        while not stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return "budget"
            free = self.config.concurrency - len(self._running)
            if free <= 0:
                await self._wait_for_slot(stop, remaining)
                continue
            # While tasks run, a claim must wait a little even if idle_wait is 0, or this loop would
            # spin without ever letting the running handlers have the event loop.
            wait = self.config.idle_wait if not self._running else max(self.config.idle_wait, 0.05)
            try:
                leases = await self.broker.claim(
                    self.config.queues, free, lease_seconds=self.config.lease_seconds,
                    worker_id=self.config.worker_id, wait=min(wait, remaining))
            except BackendUnavailable as exc:  # workers outlive backend outages; they retry with backoff
                log.warning("claim failed, retrying in %.2fs: %s", backoff, exc)
                await _sleep_unless(stop, backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.05
            if not leases and not self._running:
                return "empty"
            report.claimed += len(leases)
            for lease in leases:
                self._start(lease)
        return "stopped"

    def _start(self, lease: Lease) -> None:
        entry = _Running(lease, context.RunningTask(lease.task))
        self._running[lease.task.id] = entry
        entry.job = asyncio.create_task(self._execute(entry))
        if lease.cancel_requested:  # cancelled between a reclaim and this claim's first heartbeat
            self._cancel(entry)

    async def _execute(self, entry: _Running) -> None:
        task = entry.lease.task
        try:
            new_state = await self._attempt(entry.running)
        except asyncio.CancelledError:
            new_state = outcome.released(task)
        if entry.cancelling:
            new_state = outcome.cancelled(task)
        if entry.lost:
            self._free(task.id)
        else:  # the entry keeps its slot (and its heartbeat) until the settle lands
            self._acks.put(Settlement(entry.lease, new_state))

    def _settled(self, settlement: Settlement, applied: bool | None) -> None:
        if applied:
            self.report.count(settlement.task)
        elif applied is False:
            self.report.stale += 1
            log.warning("task %s: lease was lost before settling; another worker owns it", settlement.task.id)
        self._free(settlement.task.id)

    def _free(self, task_id: str) -> None:
        self._running.pop(task_id, None)
        self._slot_freed.set()

    async def _attempt(self, running: context.RunningTask) -> Task:
        task = running.task
        try:
            spec = self.registry.get(task.type)
        except UnknownTaskType as exc:  # version skew: this worker cannot run it, and retrying won't help
            return outcome.failed(task, f"unknown_task_type: {exc}", DEFAULT_RETRY, retryable=False)
        try:
            async with self._limits(spec):
                async with asyncio.timeout(task.timeout):
                    result = await _call(spec, running)
        except TimeoutError:
            return self._failed(task, spec, f"timeout: exceeded {task.timeout:g}s")
        except Exception as exc:  # a handler may raise anything; it becomes the task's error
            return self._failed(task, spec, f"{type(exc).__name__}: {exc}", outcome.traceback_of(exc))
        try:
            json.dumps(result, allow_nan=False)
        except (TypeError, ValueError, RecursionError) as exc:
            # A retry cannot make the result JSON, and would run the handler's side effects again.
            error = f"result is not JSON ({exc}); the handler ran, and is not run again"
            return self._failed(task, spec, error, retryable=False)
        return outcome.succeeded(task, result)

    @contextlib.asynccontextmanager
    async def _limits(self, spec: TaskSpec) -> AsyncIterator[None]:
        """Per-type limits, waited for while the lease is held (heartbeats keep it): a slot of the
        type's concurrency in this process, then a token of its rate from the backend's shared bucket."""
        slots = self._type_slots.get(spec.name)
        if slots is None and spec.concurrency:
            slots = self._type_slots[spec.name] = asyncio.Semaphore(spec.concurrency)
        async with slots if slots is not None else contextlib.nullcontext():
            if spec.rate and self.limiter is not None:
                await self._token(self.limiter, spec)
            yield

    @staticmethod
    async def _token(limiter: RateLimiter, spec: TaskSpec) -> None:
        # The bucket is shared by every worker on the backend, so there is nothing local to wait on:
        # sleep for as long as the backend says a token takes, then ask again.
        for _ in range(1_000_000):
            wait = await limiter.acquire(f"type:{spec.name}", spec.rate, spec.burst)
            if wait <= 0:
                return
            await asyncio.sleep(wait)

    def _failed(self, task: Task, spec: TaskSpec, error: str, traceback: str | None = None, *,
                retryable: bool = True) -> Task:
        after = outcome.failed(task, error, spec.retry, traceback=traceback, retryable=retryable, rand=self.rand)
        then = f"retry in {after.delay:.3g}s" if after.status is TaskStatus.SCHEDULED else "dead"
        log.warning("task %s (%s) attempt %d failed, %s: %s", task.id, task.type, task.attempts, then, error,
                    extra={"task_id": task.id, "type": task.type, "attempt": task.attempts, "traceback": traceback})
        return after

    async def _heartbeat(self) -> None:
        interval = self.config.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            entries = list(self._running.values())
            if not entries:
                continue
            try:
                renewed = await self.broker.extend([e.lease for e in entries], self.config.lease_seconds)
            except BackendUnavailable as exc:
                log.warning("heartbeat failed: %s", exc)
                continue
            for entry, lease in zip(entries, renewed, strict=True):
                if lease is None:
                    self._lose(entry)
                else:
                    entry.lease = lease
                    if lease.cancel_requested and not entry.cancelling:
                        self._cancel(entry)

    def _cancel(self, entry: _Running) -> None:
        """Someone cancelled the task: an async handler is cancelled now; a sync one runs in a thread that
        cannot be stopped, so it sees current_task().cancelled and returns when it will. Either way the
        task settles as cancelled, under its lease."""
        entry.cancelling = True
        entry.running.cancel()
        log.info("task %s: cancelled while running", entry.lease.task.id, extra={"task_id": entry.lease.task.id})
        if entry.job is not None and self._is_async(entry.lease.task):
            entry.job.cancel()

    def _is_async(self, task: Task) -> bool:
        try:
            return self.registry.get(task.type).is_async
        except UnknownTaskType:
            return True

    def _lose(self, entry: _Running) -> None:
        """The lease went to someone else: stop running a task that is no longer ours."""
        entry.lost = True
        self.report.stale += 1
        if entry.job is not None:
            entry.job.cancel()

    async def _drain(self) -> None:
        # The budget bounds claiming; in-flight tasks then get `grace` to finish, so an invocation
        # lasts at most budget + grace (the Lambda entry point sizes both from its deadline).
        jobs = [e.job for e in self._running.values() if e.job is not None]
        if not jobs:
            return
        _, pending = await asyncio.wait(jobs, timeout=self.config.grace)
        for job in pending:
            job.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _wait_for_slot(self, stop: asyncio.Event, limit: float) -> None:
        self._slot_freed.clear()
        stopper = asyncio.ensure_future(stop.wait())
        freed = asyncio.ensure_future(self._slot_freed.wait())
        await asyncio.wait({stopper, freed}, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        freed.cancel()


async def _call(spec: TaskSpec, running: context.RunningTask) -> JSON:
    payload = dict(running.task.payload)
    context.bind(running)
    if spec.is_async:
        return await spec.fn(payload)
    # Sync handlers run in a thread. A timeout stops waiting for them but cannot kill the thread.
    return await asyncio.to_thread(spec.fn, payload)


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass

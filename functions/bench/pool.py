"""The workers of a phase: `hexq worker` processes, or (memory://) worker loops in this process.

Progress is counted differently for each. Processes: stats polled at 20 Hz, minus the succeeded
count from before they started. In-process: settlements counted as they are applied, because
polling stats from the very process that does the work would take its time from the workers
(MemoryBackend.stats walks every task).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast

from hexq.core.model import Settlement, TaskStatus
from hexq.core.ports import Backend
from hexq.core.worker import Report
from hexq.functions.bench import procs
from hexq.functions.bench.context import READY_TIMEOUT, Bench, Show
from hexq.functions.worker import run_worker

POLL = 0.05  # 20 Hz


class _Counting:
    """A backend that counts the tasks it settles as succeeded; everything else goes straight through."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self.succeeded = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)

    async def settle(self, settlements: Sequence[Settlement]) -> list[bool]:
        applied = await self._backend.settle(settlements)
        self.succeeded += sum(1 for s, ok in zip(settlements, applied, strict=True)
                              if ok and s.task.status is TaskStatus.SUCCEEDED)
        return applied


@dataclass
class Pool:
    bench: Bench
    baseline: int = 0  # processes: succeeded before they started
    children: list[procs.Child] = field(default_factory=list)
    jobs: list[asyncio.Task[list[Report]]] = field(default_factory=list)
    counter: _Counting | None = None
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    async def succeeded(self) -> int:
        if self.counter is not None:
            return self.counter.succeeded
        return await self.bench.succeeded() - self.baseline

    async def wait(self, target: int, deadline: float, show: Show) -> int:
        """Until `target` tasks have succeeded or the deadline passes; the last count. Raises if workers died."""
        while True:
            count = await self.succeeded()
            show(count)
            if count >= target or time.monotonic() >= deadline:
                return count
            self.check()
            await asyncio.sleep(POLL)

    def check(self) -> None:
        procs.check_alive(self.children)
        for job in self.jobs:
            if job.done() and not job.cancelled() and (exc := job.exception()) is not None:
                raise exc

    async def stop(self) -> None:
        """Stop every worker, bounded: SIGTERM (or the stop event), then a kill or cancel after the grace."""
        settings = self.bench.container.settings
        within = settings.idle_wait + settings.grace + 5.0
        self.stopping.set()
        if self.jobs:
            _, pending = await asyncio.wait(self.jobs, timeout=within)
            for job in pending:
                job.cancel()
            await asyncio.gather(*self.jobs, return_exceptions=True)
        await procs.stop(self.children, within)


async def start(b: Bench, phase: str, queues: tuple[str, ...], count: int, concurrency: int | None = None) -> Pool:
    """`count` workers on `queues` (`concurrency` each, --concurrency by default), each ready when this returns
    (a process has printed its banner)."""
    concurrency = concurrency or b.options.concurrency
    pool = Pool(b)
    if b.local:
        pool.counter = _Counting(b.container.backend)
        settings = b.container.settings.override(queues=queues, concurrency=concurrency)
        container = replace(b.container, settings=settings, backend=cast(Backend, pool.counter))
        pool.jobs = [asyncio.create_task(run_worker(container, pool.stopping, worker_id=f"bench-{phase}-{i}",
                                                    signals=False)) for i in range(count)]
        return pool
    pool.baseline = await b.succeeded()
    args = ["hexq.functions.cli", "worker", "--backend", b.url, "--queues", ",".join(queues), "--concurrency",
            str(concurrency), "--tasks", "hexq.functions.examples", "--log-level", "WARNING"]
    try:
        for i in range(count):
            pool.children.append(await procs.start(f"{phase}-worker-{i}", args, b.workdir, b.options.profile))
        await procs.wait_ready(pool.children, READY_TIMEOUT)
    except BaseException:
        await pool.stop()
        raise
    return pool

"""Latency phase: one worker, a submitter at a steady rate, submit-to-start and submit-to-finish.

The submitter is open-loop: task i is due at start + i / rate whatever happened to task i - 1, so a
slow backend shows up as latency rather than as a lower offered rate (a submitter that falls behind
catches up at once, and `achieved_rate` says so). Latencies come from each task's own timestamps,
read back after the run: started_at - created_at and finished_at - created_at, all three stamped by
the backend's clock (Redis's TIME; the host's for SQLite and memory), so no two clocks are mixed.

On Redis it also reports what the server spent per task from the first submit until the last task
finished: every task submitted, claimed and settled one by one, as a trickle of work is, so this is
the "one by one" Redis CPU per task (idle waits included: a worker blocked on a wake list is woken
for each task).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from hexq.core.model import Task
from hexq.functions.bench import pool
from hexq.functions.bench.context import Bench, Show
from hexq.functions.bench.enqueue import noop
from hexq.functions.bench.figures import percentiles

WARMUP = 0.3  # after the worker is up: its first claim opens its connection


async def latency(b: Bench) -> dict[str, Any]:
    queue, total = b.queues.latency, b.options.latency_tasks
    request, service = noop(queue), b.container.tasks
    workers = await pool.start(b, "latency", (queue,), 1)
    try:
        await asyncio.sleep(WARMUP)
        deadline = b.deadline()
        redis = await b.redis_before()
        with b.meter.phase(f"latency: {b.options.rate:g}/s", total) as show:
            submitted, submit_seconds, elapsed = await open_loop(b, lambda: service.submit(request), total, deadline,
                                                                 show, workers.check)
        with b.meter.phase("latency: waiting for the rest", submitted) as show:
            await workers.wait(submitted, deadline, show)
        usage = await b.redis_since(redis, submitted)
    finally:
        await workers.stop()
    tasks = await b.finished(queue, submitted)
    mode = "in-process" if b.local else "processes"
    return figures(b, mode, total, submitted, submit_seconds, elapsed, tasks, usage)


def figures(b: Bench, mode: str, total: int, submitted: int, submit_seconds: list[float], elapsed: float,
            tasks: list[Task], usage: dict[str, Any] | None) -> dict[str, Any]:
    """The phase's report from the tasks read back: percentiles of their own timestamps."""
    to_start = [t.started_at - t.created_at for t in tasks if t.started_at is not None]
    to_finish = [t.finished_at - t.created_at for t in tasks if t.finished_at is not None]
    return {
        "mode": mode, "rate": b.options.rate, "duration": b.options.duration,
        "tasks": total, "submitted": submitted, "completed": len(tasks), "complete": len(tasks) == total,
        # n submits span n - 1 intervals
        "achieved_rate": round((submitted - 1) / elapsed, 1) if submitted > 1 and elapsed > 0 else None,
        "submit_ms": percentiles(submit_seconds),
        "submit_to_start_ms": percentiles(to_start),
        "submit_to_finish_ms": percentiles(to_finish),
        "redis": usage,
    }


async def open_loop(b: Bench, submit: Callable[[], Awaitable[object]], total: int, deadline: float, show: Show,
                    check: Callable[[], None]) -> tuple[int, list[float], float]:
    """Submit `total` tasks at `rate` per second; return how many, each submit's duration, and the time taken.
    `check` raises if what runs the tasks has died."""
    interval = 1.0 / b.options.rate
    durations: list[float] = []
    started = time.perf_counter()
    for i in range(total):
        delay = started + i * interval - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if time.monotonic() >= deadline:
            break
        before = time.perf_counter()
        await submit()
        durations.append(time.perf_counter() - before)
        if i % 20 == 0:
            show(i + 1)
            check()
    show(len(durations))
    return len(durations), durations, time.perf_counter() - started

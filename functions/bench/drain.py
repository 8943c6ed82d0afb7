"""Drain phase: N noop tasks queued up front, then W workers; how fast does the backlog clear?

Timing. The headline figure is N / (last finished_at - first started_at), both read back from
the backend after the run: it leaves out process start-up (imports, bootstrap) and the stats
polling interval. The wall time from spawning the workers to stats showing N succeeded is
reported beside it, with the start-up part (spawn until the last worker printed its banner).

CPU. Each worker's user + system CPU (all threads) from /proc/<pid>/stat, from the moment it
printed its banner until the backlog was gone; peak RSS is the kernel's high-water mark (VmHWM).
With memory:// the workers run in this process (no other process can see that backend): the CPU
is then this whole process's (the bench's own bookkeeping included, which is small: in-process
progress is counted from settlements, not by polling stats).
"""

from __future__ import annotations

import resource
import time
from typing import Any

from hexq.core.model import Task
from hexq.functions.bench import pool, procs
from hexq.functions.bench.context import Bench, Show
from hexq.functions.bench.enqueue import noop
from hexq.functions.bench.figures import rate

_MB = 1024 * 1024


async def drain(b: Bench) -> dict[str, Any]:
    n, w, c = b.options.count, b.options.workers, b.options.concurrency
    await _top_up(b, n - b.prequeued)
    label = f"drain: {w} {'in-process workers' if b.local else 'processes'} x {c}"
    with b.meter.phase(label, n) as show:
        figures = await (_in_process(b, show) if b.local else _processes(b, show))
    tasks = await b.finished(b.queues.drain, n)
    seconds = _window(tasks)
    cpu = sum(p["cpu_seconds"] for p in figures["processes"])
    return {
        "mode": "in-process" if b.local else "processes",
        "workers": w, "concurrency": c, "tasks": n, "drained": len(tasks), "complete": len(tasks) == n,
        "seconds": round(seconds, 6), "per_second": _round(rate(len(tasks), seconds)),
        "timing": "first started_at to last finished_at of the drained tasks, read back from the backend",
        **figures,
        "wall_per_second": _round(rate(len(tasks), figures["wall_seconds"])),
        "cpu_seconds": round(cpu, 3),
        "cpu_us_per_task": round(cpu / len(tasks) * 1e6, 1) if tasks else None,
        "peak_rss_mb": max((p["peak_rss_mb"] for p in figures["processes"]), default=None),
    }


async def _top_up(b: Bench, missing: int) -> None:
    """Queue what the bulk phase did not (it was skipped or timed out): untimed, in bulk."""
    deadline = b.deadline()
    while missing > 0 and time.monotonic() < deadline:
        size = min(b.options.chunk, missing)
        await b.container.tasks.submit_bulk([noop(b.queues.drain)] * size)
        missing -= size
        b.prequeued += size


async def _processes(b: Bench, show: Show) -> dict[str, Any]:
    deadline = b.deadline()
    spawned = time.monotonic()
    workers = await pool.start(b, "drain", b.queues.drain, b.options.workers)
    try:
        ready = max(child.ready_at or spawned for child in workers.children)
        await workers.wait(b.options.count, deadline, show)
        done = time.monotonic()
        for child in workers.children:
            procs.sample(child, "done")
    finally:
        await workers.stop()
    return {"wall_seconds": round(done - spawned, 6), "startup_seconds": round(ready - spawned, 6),
            "processes": [_process(child) for child in workers.children]}


def _process(child: procs.Child) -> dict[str, Any]:
    total = child.samples.get("done", child.cpu_at_ready)
    return {"name": child.name, "pid": child.pid, "cpu_seconds": round(total - child.cpu_at_ready, 3),
            "cpu_seconds_with_startup": round(total, 3),
            "peak_rss_mb": round(child.samples.get("peak_rss", 0.0) / _MB, 1)}


async def _in_process(b: Bench, show: Show) -> dict[str, Any]:
    deadline = b.deadline()
    cpu = time.process_time()
    started = time.monotonic()
    workers = await pool.start(b, "drain", b.queues.drain, b.options.workers)
    try:
        await workers.wait(b.options.count, deadline, show)
        done = time.monotonic()
        cpu = time.process_time() - cpu
    finally:
        await workers.stop()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports kilobytes
    process = {"name": "bench (in-process workers)", "pid": None, "cpu_seconds": round(cpu, 3),
               "cpu_seconds_with_startup": round(cpu, 3), "peak_rss_mb": round(peak / _MB, 1)}
    return {"wall_seconds": round(done - started, 6), "startup_seconds": 0.0, "processes": [process]}


def _window(tasks: list[Task]) -> float:
    starts = [t.started_at for t in tasks if t.started_at is not None]
    ends = [t.finished_at for t in tasks if t.finished_at is not None]
    return max(ends) - min(starts) if starts and ends else 0.0


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)

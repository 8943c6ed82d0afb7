"""Drain phase: N noop tasks queued up front, then W workers; how fast does the backlog clear?

One row per entry of --workers (1,2,4 runs three drains, each over its own queue and its own N
tasks), so scaling can be read against the cores; an entry WxC gives its workers concurrency C
(1x1: every claim and settle is one task, the one-by-one reading of Redis's CPU per task).

Timing. The headline figure is N / (last finished_at - first started_at), both read back from
the backend after the run: it leaves out process start-up (imports, bootstrap) and the stats
polling interval. The wall time from spawning the workers to stats showing N succeeded is
reported beside it, with the start-up part (spawn until the last worker printed its banner).

CPU. Each worker's user + system CPU (all threads) from /proc/<pid>/stat, from the moment it
printed its banner until the backlog was gone; peak RSS is the kernel's high-water mark (VmHWM).
Beside them: the bench process's own CPU over the same time (it polls progress), and on Redis the
server's main-thread CPU and its commandstats (redisstats.py) from before the spawn to the end.
Each is also given as cores: CPU seconds over the drain window, so 2 cores full reads as 2.0, and
with the time it waited for a core (schedstat's run delay, where the kernel and the pid allow): a
process that is neither busy nor waiting for a core was waiting on I/O, i.e. on round trips.

Start-up skew. Workers start one after another (each imports and bootstraps for a few hundred ms),
and the first drains alone meanwhile, so with W > 1 the headline mixes 1..W workers. Beside it,
`all_running` counts only the tasks started once every worker had started its first task (each
task records its worker), up to the last finish, on the backend's clock: the rate with all W at
work. It is None when some worker took no task at all (the backlog was gone before it started).
With memory:// the workers run in this process (no other process can see that backend): the CPU
is then this whole process's (the bench's own bookkeeping included, which is small: in-process
progress is counted from settlements, not by polling stats).
"""

from __future__ import annotations

import os
import resource
import time
from typing import Any

from hexq.core.model import Task
from hexq.core.services import SubmitRequest
from hexq.functions.bench import pool, procs, spread
from hexq.functions.bench.context import Bench, Show
from hexq.functions.bench.enqueue import noop
from hexq.functions.bench.figures import per_task, rate

_MB = 1024 * 1024


async def drains(b: Bench) -> list[dict[str, Any]]:
    """One drain per entry of --workers, in the order given."""
    return [await drain(b, i, workers, c) for i, (workers, c) in enumerate(b.options.drains())]


async def drain(b: Bench, index: int, workers: int, c: int) -> dict[str, Any]:
    n, queues = b.options.count, b.queues.of_drain(index)
    # Row 0 goes on round robin where the bulk phase stopped; a later row starts at the first queue again.
    turns = b.drain_turns if index == 0 else spread.RoundRobin([noop(q) for q in queues], b.options.chunk)
    await _top_up(b, turns, n - (b.prequeued if index == 0 else 0))
    label = f"drain: {workers} {'in-process workers' if b.local else 'processes'} x {c}"
    redis, redis_wait = await b.redis_before(), _wait(b.redis_pid)
    with b.meter.phase(label, n) as show:
        phase = "drain" if index == 0 else f"drain{index}"  # log and profile file names
        figures = await (_in_process(b, queues, phase, workers, c, show) if b.local else
                         _processes(b, queues, phase, workers, c, show))
    usage = await b.redis_since(redis, n)
    if usage is not None:
        figures["redis_server"] = {"cpu_seconds": usage["server_cpu_seconds"],
                                   "cpu_wait_seconds": _since(redis_wait, _wait(b.redis_pid))}
        if "server_cpu_seconds_by_node" in usage:  # a cluster: how evenly the drain loaded its masters
            figures["redis_masters"] = [{"node": node, "cpu_seconds": cpu}
                                        for node, cpu in usage["server_cpu_seconds_by_node"].items()]
            figures["redis_masters_max_over_min"] = usage["server_cpu_max_over_min"]
    tasks = await b.finished_in(queues, n)
    seconds = _window(tasks)
    cpu = sum(p["cpu_seconds"] for p in figures["processes"])
    _add_shares(figures, len(tasks), seconds)
    figures["all_running"] = _all_running(tasks, workers)
    return {
        "mode": "in-process" if b.local else "processes",
        "workers": workers, "concurrency": c, "tasks": n, "drained": len(tasks), "complete": len(tasks) == n,
        "seconds": round(seconds, 6), "per_second": _round(rate(len(tasks), seconds)),
        "timing": "first started_at to last finished_at of the drained tasks, read back from the backend",
        **figures,
        "wall_per_second": _round(rate(len(tasks), figures["wall_seconds"])),
        "cpu_seconds": round(cpu, 3),
        "cpu_us_per_task": per_task(cpu, len(tasks)),
        "peak_rss_mb": max((p["peak_rss_mb"] for p in figures["processes"]), default=None),
        "redis": usage,
    }


async def _top_up(b: Bench, turns: spread.RoundRobin[SubmitRequest], missing: int) -> None:
    """Queue what the bulk phase did not (it was skipped, timed out, or this is a later row): untimed, in bulk."""
    deadline = b.deadline()
    while missing > 0 and time.monotonic() < deadline:
        size = min(b.options.chunk, missing)
        await b.container.tasks.submit_bulk(turns.take(size))
        missing -= size


def _add_shares(figures: dict[str, Any], tasks: int, window: float) -> None:
    """CPU µs per task and cores (CPU over the drain window) for each process, the bench and Redis."""
    shares = [*figures["processes"], figures["bench_process"]]
    if "redis_server" in figures:
        shares.append(figures["redis_server"])
    shares += figures.get("redis_masters", [])
    for entry in shares:
        entry["cpu_us_per_task"] = per_task(entry["cpu_seconds"], tasks)
        entry["cores"] = round(entry["cpu_seconds"] / window, 2) if window > 0 else None


async def _processes(b: Bench, queues: tuple[str, ...], phase: str, count: int, c: int, show: Show) -> dict[str, Any]:
    deadline = b.deadline()
    spawned = time.monotonic()
    workers = await pool.start(b, phase, queues, count, c)
    try:
        ready = max(child.ready_at or spawned for child in workers.children)
        bench_cpu, bench_wait = time.process_time(), _wait(os.getpid())
        await workers.wait(b.options.count, deadline, show)
        done = time.monotonic()
        bench_cpu, bench_wait = time.process_time() - bench_cpu, _since(bench_wait, _wait(os.getpid()))
        for child in workers.children:
            procs.sample(child, "done")
    finally:
        await workers.stop()
    return {"wall_seconds": round(done - spawned, 6), "startup_seconds": round(ready - spawned, 6),
            "processes": [_process(child) for child in workers.children],
            "bench_process": {"cpu_seconds": round(bench_cpu, 3), "cpu_wait_seconds": bench_wait}}


def _process(child: procs.Child) -> dict[str, Any]:
    total = child.samples.get("done", child.cpu_at_ready)
    return {"name": child.name, "pid": child.pid, "cpu_seconds": round(total - child.cpu_at_ready, 3),
            "cpu_wait_seconds": _since(child.wait_at_ready, child.samples.get("wait_done")),
            "cpu_seconds_with_startup": round(total, 3),
            "peak_rss_mb": round(child.samples.get("peak_rss", 0.0) / _MB, 1)}


async def _in_process(b: Bench, queues: tuple[str, ...], phase: str, count: int, c: int, show: Show) -> dict[str, Any]:
    deadline = b.deadline()
    cpu, wait = time.process_time(), _wait(os.getpid())
    started = time.monotonic()
    workers = await pool.start(b, phase, queues, count, c)
    try:
        await workers.wait(b.options.count, deadline, show)
        done = time.monotonic()
        cpu = time.process_time() - cpu
    finally:
        await workers.stop()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports kilobytes
    process = {"name": "bench (in-process workers)", "pid": None, "cpu_seconds": round(cpu, 3),
               "cpu_wait_seconds": _since(wait, _wait(os.getpid())),
               "cpu_seconds_with_startup": round(cpu, 3), "peak_rss_mb": round(peak / _MB, 1)}
    # The workers' CPU is the bench's own here: nothing is left to count for the bench apart.
    return {"wall_seconds": round(done - started, 6), "startup_seconds": 0.0, "processes": [process],
            "bench_process": {"cpu_seconds": 0.0, "cpu_wait_seconds": None}}


def _all_running(tasks: list[Task], workers: int) -> dict[str, Any] | None:
    """Tasks started once every worker was at work, the seconds from then to the last finish, and the rate."""
    first: dict[str, float] = {}
    for t in tasks:
        if t.worker_id is not None and t.started_at is not None:
            first[t.worker_id] = min(first.get(t.worker_id, t.started_at), t.started_at)
    ends = [t.finished_at for t in tasks if t.finished_at is not None]
    if len(first) < workers or not ends:
        return None
    since = max(first.values())
    count = sum(1 for t in tasks if t.started_at is not None and t.started_at >= since)
    seconds = max(ends) - since
    return {"tasks": count, "seconds": round(seconds, 6), "per_second": _round(rate(count, seconds))}


def _wait(pid: int | None) -> float | None:
    return None if pid is None else procs.cpu_wait_seconds(pid)


def _since(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else round(after - before, 3)


def _window(tasks: list[Task]) -> float:
    starts = [t.started_at for t in tasks if t.started_at is not None]
    ends = [t.finished_at for t in tasks if t.finished_at is not None]
    return max(ends) - min(starts) if starts and ends else 0.0


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)

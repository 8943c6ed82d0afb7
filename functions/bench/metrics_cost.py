"""`hexq bench --metrics-cost`: what Prometheus metrics cost a worker, per task.

Two readings. The observer alone: PrometheusEvents.started + finished on one task, timed in this process
over many calls (what the worker adds per task, without the noise of a queue). And the drain: the bench's
drain phase run with the worker processes' metrics off, then on (HEXQ_METRICS in their environment),
alternating `rounds` times; the workers' CPU µs per task of each, its best round, and the difference.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from hexq.core.model import Task, TaskStatus
from hexq.functions.bench.options import SKIPPABLE, BenchOptions
from hexq.functions.settings import Settings

CALLS = 200_000


def observer_cost(calls: int = CALLS) -> float:
    """µs per task of PrometheusEvents.started + finished (one process, the values in memory)."""
    from prometheus_client import CollectorRegistry

    from hexq.functions.metrics.events import Labels, PrometheusEvents
    from hexq.functions.metrics.instruments import TaskInstruments

    events = PrometheusEvents(TaskInstruments.create(CollectorRegistry()), Labels(["noop"], ["default"]))
    task = Task(id="t", type="noop", payload={}, status=TaskStatus.RUNNING, attempts=1, created_at=1.0, run_at=1.0,
                started_at=1.002)
    after = task.moved_to(TaskStatus.SUCCEEDED)
    for _ in range(1000):  # the children are made and cached on the first call
        events.started(task)
        events.finished(task, after, 0.0003)
    start = time.perf_counter()
    for _ in range(calls):
        events.started(task)
        events.finished(task, after, 0.0003)
    return (time.perf_counter() - start) / calls * 1e6


@contextlib.contextmanager
def _metrics_env(mode: str) -> Iterator[None]:
    before = os.environ.get("HEXQ_METRICS")
    os.environ["HEXQ_METRICS"] = mode  # the worker processes the drain spawns inherit it
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("HEXQ_METRICS", None)
        else:
            os.environ["HEXQ_METRICS"] = before


async def drain_cost(options: BenchOptions, settings: Settings, rounds: int = 2) -> dict[str, Any]:
    from hexq.functions.bench.runner import run_bench

    only_drain = replace(options, skip=frozenset(SKIPPABLE) - {"drain"}, workers=options.workers[:1])
    best: dict[str, dict[str, Any]] = {}
    for _ in range(rounds):
        for mode in ("off", "on"):
            with _metrics_env(mode):
                report = await run_bench(only_drain, settings.override(metrics=mode))
            row = report["drain"][0]
            workers_cpu = sum(p["cpu_seconds"] for p in row["processes"])
            figures = {"cpu_us_per_task": round(workers_cpu / max(row["drained"], 1) * 1e6, 2),
                       "per_second": row["per_second"], "tasks": row["drained"], "complete": row["complete"]}
            if mode not in best or figures["cpu_us_per_task"] < best[mode]["cpu_us_per_task"]:
                best[mode] = figures
    return {"workers": row["workers"], "concurrency": row["concurrency"], "backend": report["backend"],
            "rounds": rounds, "off": best["off"], "on": best["on"],
            "difference_us_per_task": round(best["on"]["cpu_us_per_task"] - best["off"]["cpu_us_per_task"], 2)}


async def metrics_cost(options: BenchOptions, settings: Settings) -> dict[str, Any]:
    return {"observer_us_per_task": round(observer_cost(), 2), "drain": await drain_cost(options, settings)}


def render(figures: dict[str, Any]) -> str:
    d = figures["drain"]
    return "\n".join([
        f"metrics cost: drain of {d['off']['tasks']} noop tasks by {d['workers']} worker process(es) x "
        f"{d['concurrency']} on {d['backend']}, best of {d['rounds']} rounds each",
        f"  metrics off: {d['off']['cpu_us_per_task']:.2f} µs CPU/task, {d['off']['per_second']} tasks/s",
        f"  metrics on:  {d['on']['cpu_us_per_task']:.2f} µs CPU/task, {d['on']['per_second']} tasks/s",
        f"  difference:  {d['difference_us_per_task']:+.2f} µs CPU/task (worker processes)",
        f"  the observer alone (started + finished, one process): {figures['observer_us_per_task']:.2f} µs/task",
    ])

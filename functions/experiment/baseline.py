"""`baseline`: a low, steady rate of no-op tasks on one worker: the latency every other run compares with.

Poisson arrivals at a low rate (far below capacity), scheduled by the clock; submit-to-start and
submit-to-finish are measured from each task's scheduled moment, the first seconds (warm-up: the
worker's first claims open its connections) left out. Beside them, the worker process's CPU per task
and its peak resident memory.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from hexq.core.services import SubmitRequest
from hexq.functions.bench import procs
from hexq.functions.experiment import plots
from hexq.functions.experiment.lab import Lab
from hexq.functions.experiment.latency import figures_of, offered
from hexq.functions.experiment.result import Result

TITLE = "baseline: a low steady rate of no-op tasks, latency from the scheduled time"
ABOUT = __doc__.split("\n\n", 1)[1].strip() if __doc__ else ""


def sizes(quick: bool) -> dict[str, Any]:
    if quick:
        return {"rate": 20.0, "duration": 4.0, "warmup": 1.0, "workers": 1, "concurrency": 10}
    return {"rate": 20.0, "duration": 30.0, "warmup": 5.0, "workers": 1, "concurrency": 10}


async def run(lab: Lab, seed: int) -> Result:
    s = sizes(lab.options.quick)
    queue = lab.queue("baseline")
    async with lab.workers([queue], s["workers"], s["concurrency"]) as workers:
        child = workers.children[0]
        cpu_before = procs.cpu_seconds(child.pid)
        rows, complete = await offered(lab, workers, queue, s["rate"], s["duration"], s["warmup"],
                                       random.Random(seed), lambda i: SubmitRequest("noop", {}, queue=queue),
                                       "baseline")
        cpu = procs.cpu_seconds(child.pid) - cpu_before
        rss = procs.peak_rss_bytes(child.pid)
    figures = figures_of(rows, s["duration"])
    figures["worker_cpu_us_per_task"] = round(cpu / len(rows) * 1e6, 1) if rows else None
    figures["worker_peak_rss_mb"] = round(rss / 2**20, 1)
    headline: dict[str, float | None] = {
        "to_start_p50_ms": figures["to_start_ms"]["p50"], "to_start_p99_ms": figures["to_start_ms"]["p99"],
        "to_finish_p50_ms": figures["to_finish_ms"]["p50"], "to_finish_p99_ms": figures["to_finish_ms"]["p99"],
        "worker_cpu_us_per_task": figures["worker_cpu_us_per_task"]}
    return Result(rows, {**figures, "sizes": s}, headline, complete, list(lab.notes))


def figures(results: Sequence[Result]) -> list[plots.Figure]:
    rows = [r for result in results for r in result.rows if not r["warmup"]]
    series = {"submit to start": [r["to_start"] for r in rows if r["to_start"] is not None],
              "submit to finish": [r["to_finish"] for r in rows if r["to_finish"] is not None]}

    def draw(axes: list[Any]) -> None:
        plots.cdf(axes[0], series, xlabel="ms from the scheduled submit (log scale)", title="baseline latency CDF")

    return [plots.Figure("baseline_latency.png", "Latency of no-op tasks at a low steady rate, from each task's "
                         "scheduled submit time (warm-up left out)", draw)]


def findings(results: Sequence[Result]) -> list[str]:
    f = results[0].summary
    s = f["sizes"]

    def line(name: str, v: dict[str, Any]) -> str:
        return f"| {name} | {v['n']} | {v['p50']} | {v['p95']} | {v['p99']} | {v['max']} |"

    return [f"{f['tasks']} `noop` tasks, Poisson arrivals at {s['rate']:g}/s for {s['duration']:g} s on "
            f"{s['workers']} worker (concurrency {s['concurrency']}); the first {s['warmup']:g} s are warm-up and "
            "left out.\n\n| from the scheduled submit | n | p50 ms | p95 ms | p99 ms | max ms |\n"
            "|---|---|---|---|---|---|"
            f"\n{line('to start', f['to_start_ms'])}\n{line('to finish', f['to_finish_ms'])}\n"
            f"{line('submit began late by', f['late_ms'])}",
            f"The worker spent {f['worker_cpu_us_per_task']} µs of CPU per task (its idle polling included) and "
            f"peaked at {f['worker_peak_rss_mb']} MB resident. Achieved {f['achieved_per_s']} tasks/s of "
            f"{f['offered_per_s']} offered."]

"""`stress`: twice the measured capacity for a while, then nothing: backlog, memory, responsiveness, drain.

After measuring capacity (capacity.py), Poisson arrivals at 2× it for a fixed time; then arrivals stop
and the workers drain the backlog. Every quarter second the run samples the backlog (tasks not finished),
the workers' resident memory, how long hexq's API (a separate process) takes to answer GET /readyz, and
how long a stats call takes: a queue under overload should grow its backlog linearly at (2 − 1)× capacity,
keep its memory flat and stay responsive, then drain at capacity.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Sequence
from typing import Any

import httpx

from hexq.core.services import SubmitRequest
from hexq.functions.experiment import capacity, plots
from hexq.functions.experiment.lab import Lab, Processes, rss_bytes, timed
from hexq.functions.experiment.latency import figures_of, offered
from hexq.functions.experiment.result import Result
from hexq.functions.experiment.stats import summary

TITLE = "stress: twice capacity, then drain; backlog, memory and API responsiveness"
ABOUT = __doc__.split("\n\n", 1)[1].strip() if __doc__ else ""
SAMPLE = 0.25


def sizes(quick: bool) -> dict[str, Any]:
    common = {"seconds": 0.05, "workers": 1, "concurrency": 4, "factor": 2.0, "sample_every": SAMPLE}
    if quick:
        return {**common, "capacity_tasks": 80, "duration": 4.0}
    return {**common, "capacity_tasks": 400, "duration": 30.0}


async def run(lab: Lab, seed: int) -> Result:
    s = sizes(lab.options.quick)
    cap_queue, queue = lab.queue("capacity"), lab.queue("overload")
    samples: list[dict[str, Any]] = []
    async with lab.workers([cap_queue, queue], s["workers"], s["concurrency"]) as workers, lab.api() as (api, base):
        cap = await capacity.measure(lab, cap_queue, SubmitRequest("sleep", {"seconds": s["seconds"]},
                                                                   queue=cap_queue), s["capacity_tasks"], workers)
        rate = s["factor"] * (cap["per_second"] or 1.0)
        stop = asyncio.Event()
        start = time.time()
        sampler = asyncio.create_task(_sample(lab, queue, workers, base, start, stop, samples))

        def check() -> None:
            workers.check()
            api.check()

        try:
            rows, complete = await offered(lab, workers, queue, rate, s["duration"], 0.0, random.Random(seed),
                                           lambda i: SubmitRequest("sleep", {"seconds": s["seconds"]}, queue=queue),
                                           f"stress: {s['factor']:g}× ({rate:.0f}/s)", check)
        finally:
            stop.set()
            await sampler
    return _analyse(rows, samples, s, cap, rate, complete & cap["complete"], lab.notes)


async def _sample(lab: Lab, queue: str, workers: Processes, base: str, start: float, stop: asyncio.Event,
                  samples: list[dict[str, Any]]) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=10.0) as client:
        while True:
            final = stop.is_set()  # one sample after the run ends: the drained backlog, whenever it ended
            t = time.time() - start
            before = time.perf_counter()
            try:
                status = (await client.get("/readyz")).status_code
            except httpx.HTTPError:
                status = 0
            readyz = time.perf_counter() - before
            backlog: list[int] = []
            stats = await timed(_outstanding(lab, queue, backlog))
            samples.append({"t": round(t, 3), "backlog": backlog[0], "readyz_ms": round(readyz * 1000, 3),
                            "readyz_status": status, "stats_ms": round(stats * 1000, 3),
                            "worker_rss_mb": round(sum(rss_bytes(c.pid) for c in workers.children) / 2**20, 1)})
            if final:
                return
            with contextlib.suppress(TimeoutError):  # woken at once when the run ends
                await asyncio.wait_for(stop.wait(), max(0.0, SAMPLE - (time.perf_counter() - before)))


async def _outstanding(lab: Lab, queue: str, into: list[int]) -> None:
    into.append(await lab.outstanding([queue]))


def _analyse(rows: list[dict[str, Any]], samples: list[dict[str, Any]], s: dict[str, Any], cap: dict[str, Any],
             rate: float, complete: bool, notes: list[str]) -> Result:
    figures = figures_of(rows, s["duration"])
    peak = max(samples, key=lambda x: x["backlog"], default=None)
    after = [x for x in samples if x["t"] >= s["duration"]]
    drained = next((x["t"] for x in after if x["backlog"] == 0), None)
    growing = [x for x in samples if x["t"] <= s["duration"]]
    slope = _slope([(x["t"], x["backlog"]) for x in growing])
    readyz = summary([x["readyz_ms"] / 1000 for x in samples])
    rss = [x["worker_rss_mb"] for x in samples]
    out = {**figures, "capacity": cap, "rate": round(rate, 2), "peak_backlog": peak["backlog"] if peak else None,
           "backlog_growth_per_s": slope, "expected_growth_per_s": round(rate - (cap["per_second"] or 0.0), 2),
           "drained_at_s": drained, "drain_seconds": None if drained is None else round(drained - s["duration"], 2),
           "readyz_ms": readyz, "readyz_failures": sum(x["readyz_status"] != 200 for x in samples),
           "stats_ms": summary([x["stats_ms"] / 1000 for x in samples]),
           "worker_rss_mb": {"first": rss[0] if rss else None, "max": max(rss, default=None)}, "sizes": s}
    headline: dict[str, float | None] = {
        "capacity_per_s": cap["per_second"], "offered_per_s": out["rate"], "peak_backlog": out["peak_backlog"],
        "drain_s": out["drain_seconds"], "readyz_p99_ms": readyz["p99"],
        "worker_rss_max_mb": out["worker_rss_mb"]["max"],
        "to_finish_p99_ms": figures["to_finish_ms"]["p99"]}
    return Result(rows, out, headline, complete, list(notes), tables={"timeline": samples})


def _slope(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of y over t."""
    if len(points) < 2:
        return None
    n = len(points)
    mt, my = sum(t for t, _ in points) / n, sum(y for _, y in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    return round(sum((t - mt) * (y - my) for t, y in points) / var, 2) if var else None


def figures(results: Sequence[Result]) -> list[plots.Figure]:
    first = results[0]
    samples, s = first.tables["timeline"], first.summary["sizes"]
    ts = [x["t"] for x in samples]

    def draw(axes: list[Any]) -> None:
        plots.lines(axes[0], {"backlog (tasks not finished)": (ts, [x["backlog"] for x in samples])},
                    xlabel="seconds", ylabel="tasks", title=f"backlog under {s['factor']:g}× capacity, then drain",
                    styles={"backlog (tasks not finished)": "-"})
        axes[0].axvspan(0, s["duration"], color="red", alpha=0.08, label="overload", zorder=0)
        axes[0].legend(fontsize="small")
        plots.lines(axes[1], {"GET /readyz (ms)": (ts, [x["readyz_ms"] for x in samples]),
                              "stats call (ms)": (ts, [x["stats_ms"] for x in samples]),
                              "worker RSS (MB)": (ts, [x["worker_rss_mb"] for x in samples])},
                    xlabel="seconds", ylabel="ms / MB (log scale)", logy=True, title="responsiveness and memory",
                    styles={k: "-" for k in ("GET /readyz (ms)", "stats call (ms)", "worker RSS (MB)")})

    return [plots.Figure("stress_timeline.png", "Backlog, API and stats latency and worker memory while arrivals "
                         "run at twice capacity (shaded) and after", draw, panels=2)]


def findings(results: Sequence[Result]) -> list[str]:
    f = results[0].summary
    s = f["sizes"]
    return [f"Capacity {f['capacity']['per_second']} tasks/s (`sleep` {s['seconds']:g} s on {s['workers']} worker(s) "
            f"of concurrency {s['concurrency']}); offered {f['rate']}/s for {s['duration']:g} s.",
            f"The backlog grew at {f['backlog_growth_per_s']} tasks/s (expected: offered minus capacity, "
            f"{f['expected_growth_per_s']}/s) to a peak of {f['peak_backlog']}, and drained "
            f"{f['drain_seconds']} s after arrivals stopped. GET /readyz answered in p50 {f['readyz_ms']['p50']} ms, "
            f"p99 {f['readyz_ms']['p99']} ms ({f['readyz_failures']} failures); a stats call took p99 "
            f"{f['stats_ms']['p99']} ms. Worker memory went from {f['worker_rss_mb']['first']} MB to at most "
            f"{f['worker_rss_mb']['max']} MB. Submit to finish, from the scheduled time: p50 "
            f"{f['to_finish_ms']['p50']} ms, p99 {f['to_finish_ms']['p99']} ms: under sustained overload latency is "
            "the backlog divided by capacity, and grows with the overload's length."]

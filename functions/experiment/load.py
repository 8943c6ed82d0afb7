"""`load`: open-loop arrivals from 10 % to 150 % of the measured capacity; latency against offered load.

First the workers' capacity is measured (capacity.py: how fast they clear a backlog of the same tasks).
Then, for each level, Poisson arrivals at that share of it for a fixed time, scheduled by the clock,
each level on a fresh queue after the previous one has drained. Latency (submit to finish, from the
scheduled moment, warm-up left out) should stay near the service time until utilisation nears 100 %,
then climb: queueing theory's knee. The knee is marked at the first level from which on every level's p99
exceeds 3× the lowest level's p99, or its achieved throughput falls below 95 % of the rate that arrived.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from hexq.core.services import SubmitRequest
from hexq.functions.experiment import capacity, plots
from hexq.functions.experiment.lab import Lab
from hexq.functions.experiment.latency import figures_of, offered
from hexq.functions.experiment.result import Result

TITLE = "load: latency against offered load from 10 % to 150 % of capacity, with the knee"
ABOUT = __doc__.split("\n\n", 1)[1].strip() if __doc__ else ""
KNEE_FACTOR = 3.0


def sizes(quick: bool) -> dict[str, Any]:
    common = {"seconds": 0.05, "workers": 1, "concurrency": 4, "knee_factor": KNEE_FACTOR}
    if quick:
        return {**common, "capacity_tasks": 80, "fractions": [0.25, 0.75, 1.5], "duration": 2.0, "warmup": 0.3}
    return {**common, "capacity_tasks": 400, "fractions": [0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5],
            "duration": 15.0, "warmup": 2.0}


async def run(lab: Lab, seed: int) -> Result:
    s = sizes(lab.options.quick)
    rng = random.Random(seed)
    cap_queue = lab.queue("capacity")
    queues = {f: lab.queue(f"level{round(f * 100)}") for f in s["fractions"]}
    rows: list[dict[str, Any]] = []
    levels = []
    complete = True
    async with lab.workers([cap_queue, *queues.values()], s["workers"], s["concurrency"]) as workers:
        cap = await capacity.measure(lab, cap_queue, SubmitRequest("sleep", {"seconds": s["seconds"]},
                                                                   queue=cap_queue), s["capacity_tasks"], workers)
        complete &= cap["complete"]
        x = cap["per_second"] or 1.0
        for f, queue in queues.items():
            rate = f * x
            request = SubmitRequest("sleep", {"seconds": s["seconds"]}, queue=queue)
            mine, ok = await offered(lab, workers, queue, rate, s["duration"], s["warmup"], rng,
                                     _always(request), f"load: {f:.0%} ({rate:.0f}/s)", level=f)
            complete &= ok
            rows += mine
            levels.append({"fraction": f, "rate": round(rate, 2), **figures_of(mine, s["duration"])})
    knee = _knee(levels)
    headline: dict[str, float | None] = {
        "capacity_per_s": cap["per_second"], "knee_fraction": None if knee is None else knee["fraction"],
        "p99_lowest_ms": levels[0]["to_finish_ms"]["p99"] if levels else None,
        "p99_highest_ms": levels[-1]["to_finish_ms"]["p99"] if levels else None,
        "achieved_at_highest_per_s": levels[-1]["achieved_per_s"] if levels else None}
    return Result(rows, {"capacity": cap, "levels": levels, "knee": knee, "sizes": s}, headline, complete,
                  list(lab.notes))


def _always(request: SubmitRequest) -> Callable[[int], SubmitRequest]:
    return lambda _: request


def _knee(levels: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The first level from which on every level is past the knee: a lone p99 spike at a low level (a
    hiccup of a shared machine) does not count, a lasting rise does."""
    if not levels or levels[0]["to_finish_ms"]["p99"] is None:
        return None
    reference = levels[0]["to_finish_ms"]["p99"]
    reasons = [_past(level, reference) for level in levels]
    for i, why in enumerate(reasons):
        if i > 0 and why is not None and all(r is not None for r in reasons[i:]):
            return {"fraction": levels[i]["fraction"], "why": why}
    return None


def _past(level: dict[str, Any], reference: float) -> str | None:
    """Why this level is past the knee, or None."""
    p99, achieved = level["to_finish_ms"]["p99"], level["achieved_per_s"]
    if p99 is not None and p99 > KNEE_FACTOR * reference:
        return f"p99 {p99} ms > {KNEE_FACTOR:g}× {reference} ms"
    # against the arrivals that happened (a Poisson count), not the nominal rate
    offered = level["offered_per_s"]
    if achieved is not None and offered and achieved < 0.95 * offered:
        return f"achieved {achieved}/s < 95 % of the {offered}/s offered"
    return None


def figures(results: Sequence[Result]) -> list[plots.Figure]:
    first = results[0]
    levels, knee = first.summary["levels"], first.summary["knee"]
    xs = [lv["rate"] for lv in levels]

    def draw(axes: list[Any]) -> None:
        percentiles = ("p50", "p95", "p99")
        plots.lines(axes[0], {name: (xs, [lv["to_finish_ms"][name] for lv in levels]) for name in percentiles},
                    xlabel="offered tasks per second", ylabel="submit to finish, ms (log scale)", logy=True,
                    title="latency against offered load")
        plots.lines(axes[1], {"achieved": (xs, [lv["achieved_per_s"] for lv in levels]), "offered": (xs, xs)},
                    xlabel="offered tasks per second", ylabel="tasks per second", title="achieved against offered",
                    styles={"offered": "k--"})
        cap = first.summary["capacity"]["per_second"]
        for ax in axes:
            if cap:
                ax.axvline(cap, color="grey", linestyle=":", label="measured capacity")
            if knee is not None:
                ax.axvline(knee["fraction"] * (cap or 0), color="red", linestyle="--", label="knee")
            ax.legend(fontsize="small")

    return [plots.Figure("load_latency.png", "Submit-to-finish latency (from the scheduled time) and achieved "
                         "throughput against the offered rate; the dotted line is the measured capacity, the red "
                         "dashed one the knee", draw, panels=2)]


def findings(results: Sequence[Result]) -> list[str]:
    first = results[0]
    s, cap, levels, knee = (first.summary["sizes"], first.summary["capacity"], first.summary["levels"],
                            first.summary["knee"])
    table = ["| offered | rate /s | arrived /s | achieved /s | p50 ms | p95 ms | p99 ms | submit late p99 ms |",
             "|---|---|---|---|---|---|---|---|"]
    table += [f"| {lv['fraction']:.0%} | {lv['rate']} | {lv['offered_per_s']} | {lv['achieved_per_s']} | "
              f"{lv['to_finish_ms']['p50']} | "
              f"{lv['to_finish_ms']['p95']} | {lv['to_finish_ms']['p99']} | {lv['late_ms']['p99']} |" for lv in levels]
    return [f"`sleep` {s['seconds']:g} s tasks on {s['workers']} worker(s) of concurrency {s['concurrency']}: "
            f"measured capacity {cap['per_second']} tasks/s ({cap['tasks']} tasks in {cap['seconds']} s; the "
            f"service-time limit is {s['workers'] * s['concurrency'] / s['seconds']:g}/s). Each level ran "
            f"{s['duration']:g} s; the first {s['warmup']:g} s of each are left out.",
            "\n".join(table),
            "No knee within the levels run." if knee is None else
            f"The knee is at {knee['fraction']:.0%} of capacity ({knee['why']}). Beyond capacity the backlog "
            "grows for as long as the overload lasts, so latency is then set by the run's length, not by hexq."]

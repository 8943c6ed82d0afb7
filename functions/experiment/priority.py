"""`priority`: short tasks behind long ones, first-in-first-out versus short tasks at high priority.

One workload, run twice on fresh queues: a mix of short and long `sleep` tasks (the same mix and order
for both, from the seed). Policy "fifo" submits every task at normal priority, so a short task waits for
whatever long tasks came before it; policy "priority" submits the short ones at high priority, so they
overtake the queued long ones. The queue wait (first start minus submit, the backend's stamps) is
compared per class and policy, and what the long tasks pay for it. Arrivals are a burst (everything at
once: the worst case for FIFO) and, at full size, Poisson arrivals at 90 % of the workers' capacity,
scheduled by the clock (a late submit counts as wait). Few worker slots, so there is contention.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from hexq.core.model import Priority
from hexq.core.services import SubmitRequest
from hexq.functions.experiment import plots
from hexq.functions.experiment.lab import Lab, row
from hexq.functions.experiment.result import Result
from hexq.functions.experiment.stats import bootstrap_ci, summary

TITLE = "short tasks behind long ones: FIFO versus a priority for short tasks"
ABOUT = __doc__.split("\n\n", 1)[1].strip() if __doc__ else ""
POLICIES = ("fifo", "priority")
CLASSES = ("short", "long")


def sizes(quick: bool) -> dict[str, Any]:
    if quick:
        return {"tasks": 60, "long_share": 0.2, "short_seconds": 0.02, "long_seconds": 0.4, "workers": 1,
                "concurrency": 2, "arrivals": ["burst"], "utilisation": 0.9}
    return {"tasks": 500, "long_share": 0.2, "short_seconds": 0.01, "long_seconds": 1.0, "workers": 2,
            "concurrency": 2, "arrivals": ["burst", "poisson"], "utilisation": 0.9}


async def run(lab: Lab, seed: int) -> Result:
    s = sizes(lab.options.quick)
    rng = random.Random(seed)
    n, longs = s["tasks"], round(s["tasks"] * s["long_share"])
    classes = ["long"] * longs + ["short"] * (n - longs)
    rng.shuffle(classes)
    mean = (longs * s["long_seconds"] + (n - longs) * s["short_seconds"]) / n
    rate = s["utilisation"] * s["workers"] * s["concurrency"] / mean
    gaps = [rng.expovariate(rate) for _ in range(n)]
    offsets = [sum(gaps[:i]) for i in range(n)]
    queues = {(a, p): lab.queue(f"{a}.{p}") for a in s["arrivals"] for p in POLICIES}
    rows: list[dict[str, Any]] = []
    complete = True
    async with lab.workers(list(queues.values()), s["workers"], s["concurrency"]) as workers:
        for (arrival, policy), queue in queues.items():
            requests = [SubmitRequest("sleep", {"seconds": s[f"{c}_seconds"]}, queue=queue,
                                      priority=Priority.HIGH if policy == "priority" and c == "short"
                                      else Priority.NORMAL) for c in classes]
            with lab.meter.phase(f"priority: {arrival}, {policy}", n) as show:
                if arrival == "burst":
                    ids = [t.id for t in await lab.submit_all(requests)]
                    late = dict.fromkeys(ids, 0.0)
                else:
                    sent = await lab.open_loop(offsets, lambda i: requests[i], show, workers.check)  # noqa: B023
                    ids, late = [x.task_id for x in sent], {x.task_id: x.late for x in sent}
                complete &= await lab.wait_done([queue], n, lab.options.timeout, show, workers.check)
            klass = dict(zip(ids, classes, strict=False))
            for task in await lab.read_back(queue):
                r = row(task, arrival=arrival, policy=policy, cls=klass.get(task.id, "?"), late=round(late[task.id], 6))
                r["queue_wait"] = None if r["wait"] is None else round(r["wait"] + r["late"], 6)
                rows.append(r)
    return _analyse(rows, s, rng, complete, lab.notes)


def _analyse(rows: list[dict[str, Any]], s: dict[str, Any], rng: random.Random, complete: bool,
             notes: list[str]) -> Result:
    table: dict[str, Any] = {}
    for arrival in s["arrivals"]:
        for policy in POLICIES:
            for c in CLASSES:
                waits = _waits(rows, arrival, policy, c)
                service = s[f"{c}_seconds"]
                slowdown = sorted((w + service) / service for w in waits)
                table[f"{arrival}/{policy}/{c}"] = {
                    "wait_ms": summary(waits), "wait_p95_ci_ms": bootstrap_ci(waits, 0.95, rng),
                    "slowdown_p50": round(slowdown[len(slowdown) // 2], 2) if slowdown else None,
                    "slowdown_p95": round(slowdown[int(0.95 * (len(slowdown) - 1))], 2) if slowdown else None}
    burst = s["arrivals"][0]

    def p95(policy: str, c: str) -> float | None:
        value = table[f"{burst}/{policy}/{c}"]["wait_ms"]["p95"]
        return None if value is None else float(value)

    short_fifo, short_priority = p95("fifo", "short"), p95("priority", "short")
    headline: dict[str, float | None] = {
        "short_p95_fifo_ms": short_fifo, "short_p95_priority_ms": short_priority,
        "long_p95_fifo_ms": p95("fifo", "long"), "long_p95_priority_ms": p95("priority", "long"),
        "short_p95_ratio": round(short_priority / short_fifo, 3) if short_fifo and short_priority is not None
        else None}
    return Result(rows, {"by_arrival_policy_class": table, "sizes": s}, headline, complete, list(notes))


def _waits(rows: Sequence[dict[str, Any]], arrival: str, policy: str, c: str) -> list[float]:
    return [r["queue_wait"] for r in rows
            if r["arrival"] == arrival and r["policy"] == policy and r["cls"] == c and r["queue_wait"] is not None]


def figures(results: Sequence[Result]) -> list[plots.Figure]:
    rows = [r for result in results for r in result.rows]
    arrivals = results[0].summary["sizes"]["arrivals"]
    colours = {"short": "tab:blue", "long": "tab:red"}
    styles = {f"{c}, {p}": {"color": colours[c], "linestyle": "-" if p == "priority" else "--"}
              for c in CLASSES for p in POLICIES}
    out = []
    for arrival in arrivals:
        series = {f"{c}, {p}": _waits(rows, arrival, p, c) for c in CLASSES for p in POLICIES}

        def draw(axes: list[Any], series: dict[str, list[float]] = series, arrival: str = arrival) -> None:
            plots.cdf(axes[0], series, xlabel="queue wait (ms, log scale)", styles=styles,
                      title=f"queue wait CDF ({arrival} arrivals)")
            plots.boxes(axes[1], series, ylabel="queue wait (ms, log scale)",
                        title="queue wait per class and policy (whiskers p1-p99)")

        out.append(plots.Figure(f"priority_{arrival}.png",
                                f"Queue wait of short and long tasks, FIFO (dashed) versus short tasks at high "
                                f"priority (solid), {arrival} arrivals", draw, panels=2))
    return out


def findings(results: Sequence[Result]) -> list[str]:
    first = results[0]
    s, table = first.summary["sizes"], first.summary["by_arrival_policy_class"]
    lines = [f"{s['tasks']} `sleep` tasks, {round(s['long_share'] * 100)} % long ({s['long_seconds']:g} s) and the "
             f"rest short ({s['short_seconds']:g} s), on {s['workers']} worker process(es) of concurrency "
             f"{s['concurrency']}.", "", "| arrivals | policy | class | n | p50 ms | p95 ms (95 % CI) | p99 ms | "
             "max ms | slowdown p50 | slowdown p95 |", "|---|---|---|---|---|---|---|---|---|---|"]
    for key, v in table.items():
        arrival, policy, c = key.split("/")
        w, ci = v["wait_ms"], v["wait_p95_ci_ms"]
        lines.append(f"| {arrival} | {policy} | {c} | {w['n']} | {w['p50']} | {w['p95']}"
                     f"{f' ({ci[0]}–{ci[1]})' if ci else ''} | {w['p99']} | {w['max']} | {v['slowdown_p50']} | "
                     f"{v['slowdown_p95']} |")
    h = first.headline
    if h["short_p95_ratio"] is not None:
        lines += ["", f"With short tasks at high priority their p95 queue wait is {h['short_p95_priority_ms']} ms "
                  f"against {h['short_p95_fifo_ms']} ms under FIFO ({h['short_p95_ratio']:.1%} of it). The price: "
                  f"long tasks' p95 wait goes from {h['long_p95_fifo_ms']} ms to {h['long_p95_priority_ms']} ms, "
                  "since every short task submitted before a long one starts now runs first. Slowdown is "
                  "(wait + service) / service: a short task's slowdown under FIFO is dominated by the long tasks "
                  "ahead of it."]
    return ["\n".join(lines)]

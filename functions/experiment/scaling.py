"""`scaling`: 1, 2, 5 and 10 worker processes clearing the same backlog, I/O-bound and CPU-bound.

For each kind of work and each worker count, a fresh queue is paused, the backlog is submitted, the
workers are started (concurrency 1 each, so N processes run at most N tasks at once) and, once all of
them are up, the queue is resumed: start-up is not timed. Clearance is the last task's finish minus the
first task's start (the backend's stamps); throughput X(N) = tasks / clearance. The ideal is linear,
N·X(1); efficiency is X(N) / (N·X(1)). A Universal Scalability Law fit, X(N) = λN / (1 + σ(N−1) +
κN(N−1)) with λ = X(1), gives σ (contention: the share of the work that does not run in parallel) and κ
(coherency: a cost that grows with every pair of workers). I/O-bound work is `sleep`: the workers wait,
so it should scale until the backend itself is the bottleneck. CPU-bound work is `checksum` (SHA-256
rounds calibrated on this machine to a fixed service time): it cannot scale past the number of cores.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

from hexq.core.services import SubmitRequest
from hexq.functions.bench import procs
from hexq.functions.examples import checksum
from hexq.functions.experiment import plots
from hexq.functions.experiment.lab import Lab, row
from hexq.functions.experiment.result import Result
from hexq.functions.experiment.stats import usl, usl_throughput

TITLE = "worker scaling: 1 to 10 worker processes clearing a backlog, I/O-bound and CPU-bound"
ABOUT = __doc__.split("\n\n", 1)[1].strip() if __doc__ else ""
KINDS = ("io", "cpu")


def sizes(quick: bool) -> dict[str, Any]:
    if quick:
        return {"tasks": 24, "workers": [1, 2, 4], "io_seconds": 0.1, "cpu_seconds": 0.01, "concurrency": 1}
    return {"tasks": 500, "workers": [1, 2, 5, 10], "io_seconds": 0.1, "cpu_seconds": 0.05, "concurrency": 1}


def calibrate(seconds: float) -> tuple[int, float]:
    """Checksum rounds that take about `seconds` here (the best of five timings of a sample), and the
    seconds per round measured."""
    sample = 2000
    best = min(_time_rounds(sample) for _ in range(5))
    per_round = best / sample
    return max(1, round(seconds / per_round)), per_round


def _time_rounds(rounds: int) -> float:
    before = time.perf_counter()
    checksum({"data": "hexq", "rounds": rounds})
    return time.perf_counter() - before


async def run(lab: Lab, seed: int) -> Result:
    s = sizes(lab.options.quick)
    rounds, per_round = calibrate(s["cpu_seconds"])
    work = {"io": ("sleep", {"seconds": s["io_seconds"]}),
            "cpu": ("checksum", {"data": f"seed {seed}", "rounds": rounds})}
    rows: list[dict[str, Any]] = []
    machine: dict[str, Any] = {}
    complete = True
    for kind in KINDS:
        kind_type, payload = work[kind]
        for n in s["workers"]:
            queue = lab.queue(f"{kind}.{n}")
            await lab.container.queues.pause(queue)  # nothing is claimed until every worker is up
            await lab.submit_all([SubmitRequest(kind_type, payload, queue=queue)] * s["tasks"])
            load = os.getloadavg()[0]
            async with lab.workers([queue], n, s["concurrency"]) as workers:
                with lab.meter.phase(f"scaling: {kind}, {n} worker(s)", s["tasks"]) as show:
                    await lab.container.queues.resume(queue)
                    complete &= await lab.wait_done([queue], s["tasks"], lab.options.timeout, show, workers.check)
                # the workers' own CPU (all threads), from their banner to now: how many cores they used,
                # which a busy machine's other work does not inflate
                cpu = sum(procs.cpu_seconds(c.pid) - c.cpu_at_ready for c in workers.children)
            machine[f"{kind}/{n}"] = {"worker_cpu_s": round(cpu, 3), "load_before": round(load, 2),
                                      "load_after": round(os.getloadavg()[0], 2)}
            rows += [row(t, kind=kind, workers=n) for t in await lab.read_back(queue)]
    return _analyse(rows, s, complete, lab.notes, {"rounds": rounds, "seconds_per_round": per_round}, machine)


def _analyse(rows: list[dict[str, Any]], s: dict[str, Any], complete: bool, notes: list[str],
             calibration: dict[str, Any], machine: dict[str, Any]) -> Result:
    by_kind: dict[str, Any] = {}
    headline: dict[str, float | None] = {}
    for kind in KINDS:
        points = []
        for n in s["workers"]:
            mine = [r for r in rows if r["kind"] == kind and r["workers"] == n and r["status"] == "succeeded"]
            starts = [r["first_started_at"] for r in mine if r["first_started_at"] is not None]
            ends = [r["finished_at"] for r in mine if r["finished_at"] is not None]
            clearance = max(ends) - min(starts) if starts and ends else None
            used = machine.get(f"{kind}/{n}", {})
            cpu = used.get("worker_cpu_s")
            points.append({"workers": n, "tasks": len(mine), "clearance_s": None if clearance is None else
                           round(clearance, 3), "throughput": round(len(mine) / clearance, 2) if clearance else None,
                           "worker_cpu_ms_per_task": round(cpu / len(mine) * 1000, 2) if cpu and mine else None,
                           "cores_used": round(cpu / clearance, 2) if cpu and clearance else None,
                           "load_before": used.get("load_before"), "load_after": used.get("load_after")})
        x1 = points[0]["throughput"] if points and points[0]["workers"] == 1 else None
        for p in points:
            p["ideal"] = round(x1 * p["workers"], 2) if x1 else None
            p["efficiency"] = round(p["throughput"] / p["ideal"], 3) if p["throughput"] and p["ideal"] else None
        known = [p for p in points if p["throughput"]]
        fit = usl([p["workers"] for p in known], [p["throughput"] for p in known])
        by_kind[kind] = {"points": points, "usl": fit}
        last = points[-1]
        headline[f"{kind}_x1_per_s"] = x1
        headline[f"{kind}_x{last['workers']}_per_s"] = last["throughput"]
        headline[f"{kind}_efficiency_{last['workers']}"] = last["efficiency"]
        headline[f"{kind}_sigma"] = None if fit is None else fit["sigma"]
        headline[f"{kind}_kappa"] = None if fit is None else fit["kappa"]
    return Result(rows, {"by_kind": by_kind, "calibration": calibration, "sizes": s}, headline, complete, list(notes))


def figures(results: Sequence[Result]) -> list[plots.Figure]:
    first = results[0]
    by_kind, s = first.summary["by_kind"], first.summary["sizes"]
    labels = {"io": f"I/O-bound (sleep {s['io_seconds']:g} s)", "cpu": f"CPU-bound (checksum ≈{s['cpu_seconds']:g} s)"}

    def throughput(axes: list[Any]) -> None:
        for ax, kind in zip(axes, KINDS, strict=True):
            points, fit = by_kind[kind]["points"], by_kind[kind]["usl"]
            ns = [p["workers"] for p in points]
            series: dict[str, tuple[Sequence[float], Sequence[float | None]]] = {}
            for i, result in enumerate(results):
                series[f"measured{f' (repeat {i + 1})' if len(results) > 1 else ''}"] = (
                    ns, [p["throughput"] for p in result.summary["by_kind"][kind]["points"]])
            series["ideal N·X(1)"] = (ns, [p["ideal"] for p in points])
            styles = {"ideal N·X(1)": "k--"}
            if fit is not None:
                grid = [1 + i * (max(ns) - 1) / 50 for i in range(51)]
                name = f"USL fit σ={fit['sigma']:.3f} κ={fit['kappa']:.4f}"
                series[name] = (grid, [usl_throughput(fit, n) for n in grid])
                styles[name] = "g:"
            plots.lines(ax, series, xlabel="worker processes (concurrency 1 each)", ylabel="tasks per second",
                        title=labels[kind], styles=styles)

    def efficiency(axes: list[Any]) -> None:
        plots.lines(axes[0], {labels[k]: ([p["workers"] for p in by_kind[k]["points"]],
                                          [p["efficiency"] for p in by_kind[k]["points"]]) for k in KINDS},
                    xlabel="worker processes", ylabel="efficiency X(N) / (N·X(1))", title="scaling efficiency")
        axes[0].set_ylim(0, 1.15)
        rows = first.rows
        for kind, style in (("io", "-"), ("cpu", "--")):
            for colour, n in enumerate(s["workers"]):
                mine = [r for r in rows if r["kind"] == kind and r["workers"] == n and r["finished_at"] is not None]
                if not mine:
                    continue
                start = min(r["first_started_at"] for r in mine if r["first_started_at"] is not None)
                ends = sorted(r["finished_at"] - start for r in mine)
                axes[1].step([0.0, *ends], [len(ends) - i for i in range(len(ends) + 1)], where="post",
                             linestyle=style, color=f"C{colour}", label=f"{kind}, {n} worker(s)")
        axes[1].set_xlabel("seconds since the first task started")
        axes[1].set_ylabel("tasks left")
        axes[1].set_title("backlog drain")
        axes[1].grid(True, alpha=0.3)
        axes[1].legend(fontsize="x-small", ncol=2)

    return [plots.Figure("scaling_throughput.png", "Throughput against worker processes, with the ideal linear "
                         "line N·X(1) and the Universal Scalability Law fit", throughput, panels=2),
            plots.Figure("scaling_efficiency.png", "Efficiency X(N)/(N·X(1)) and the backlog left over time, "
                         "per kind of work and worker count", efficiency, panels=2)]


def findings(results: Sequence[Result]) -> list[str]:
    first = results[0]
    s, by_kind, cal = first.summary["sizes"], first.summary["by_kind"], first.summary["calibration"]
    out = [f"{s['tasks']} tasks per run; I/O-bound: `sleep` {s['io_seconds']:g} s; CPU-bound: `checksum` of "
           f"{cal['rounds']} SHA-256 rounds (≈{s['cpu_seconds']:g} s here, {cal['seconds_per_round'] * 1e6:.2f} µs "
           "a round)."]
    for kind in KINDS:
        table = ["| workers | clearance s | tasks/s | ideal tasks/s | efficiency | worker CPU ms/task | cores used | "
                 "load average before → after |", "|---|---|---|---|---|---|---|---|"]
        table += [f"| {p['workers']} | {p['clearance_s']} | {p['throughput']} | {p['ideal']} | {p['efficiency']} | "
                  f"{p.get('worker_cpu_ms_per_task')} | {p.get('cores_used')} | {p.get('load_before')} → "
                  f"{p.get('load_after')} |" for p in by_kind[kind]["points"]]
        fit = by_kind[kind]["usl"]
        verdict = "no USL fit (too few points)" if fit is None else (
            f"USL fit: λ = {fit['lambda']} tasks/s, σ = {fit['sigma']}, κ = {fit['kappa']}"
            + (f" (throughput would peak near N = {fit['peak_workers']})" if fit["peak_workers"] else ""))
        out.append(f"**{'I/O-bound' if kind == 'io' else 'CPU-bound'}**\n\n" + "\n".join(table) + f"\n\n{verdict}.")
    out.append("Reading it: I/O-bound work should stay near the ideal line (σ, κ near 0) until the backend or "
               "the machine's cores limit the claims and settles; CPU-bound work cannot go past the number of "
               "cores, so efficiency falls once N exceeds them and σ is large. That is the expected result, not "
               "a fault: more processes do not make more cores. \"cores used\" is the workers' own CPU time over "
               "the clearance time; on a machine shared with other work (load average above the core count) "
               "CPU-bound throughput is capped by the share of the cores the workers got, which that column shows.")
    return out

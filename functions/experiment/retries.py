"""`retries`: attempts, dead letters and backoff under failure probabilities 0.1, 0.3, 0.5 and an outage.

Each attempt of `experiment.flaky` fails with probability p, decided by a hash of (seed, task, attempt)
(functions/experiment/tasks.py), and a task has 5 attempts with backoff min(1 s, 0.1 s · 2^(n−1)),
jittered down by up to half. The number of attempts a task takes should then follow a geometric
distribution truncated at 5, and the dead-letter fraction should be p^5. The backoff each retry was
given is read from the task's history (Attempt.delay) and checked against the configured envelope
[d/2, d]; the observed gap (next attempt's start minus the failed attempt's end) is that delay plus the
time for the poller to promote the task and a worker to claim it. Then an outage: tasks arrive at a
steady rate while every attempt inside a window fails (`experiment.outage`, 6 attempts, backoff up to
4 s), to show retries piling up during the outage and draining after it.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from hexq.core.model import Task
from hexq.core.retry import RetryPolicy
from hexq.core.services import SubmitRequest
from hexq.functions.experiment import plots
from hexq.functions.experiment.lab import Lab, row
from hexq.functions.experiment.result import Result
from hexq.functions.experiment.stats import attempts_expected, summary, total_variation
from hexq.functions.experiment.tasks import FLAKY_ATTEMPTS, FLAKY_RETRY, OUTAGE_ATTEMPTS, OUTAGE_RETRY

TITLE = "retries: attempts against the expected distribution, dead letters, backoff, an outage"
ABOUT = __doc__.split("\n\n", 1)[1].strip() if __doc__ else ""
PROBABILITIES = (0.1, 0.3, 0.5)
BIN = 0.5  # seconds per bar of the retries-over-time plot


def sizes(quick: bool) -> dict[str, Any]:
    common = {"probabilities": list(PROBABILITIES), "max_attempts": FLAKY_ATTEMPTS, "retry_base": FLAKY_RETRY.base,
              "retry_cap": FLAKY_RETRY.cap, "jitter": FLAKY_RETRY.jitter, "outage_max_attempts": OUTAGE_ATTEMPTS,
              "outage_retry_base": OUTAGE_RETRY.base, "outage_retry_cap": OUTAGE_RETRY.cap, "poll_interval": 0.1}
    if quick:
        return {**common, "tasks_per_p": 60, "workers": 1, "concurrency": 20, "outage_rate": 20.0,
                "outage_duration": 4.0, "outage_window": [1.0, 2.5]}
    return {**common, "tasks_per_p": 400, "workers": 2, "concurrency": 20, "outage_rate": 20.0,
            "outage_duration": 20.0, "outage_window": [5.0, 10.0]}


async def run(lab: Lab, seed: int) -> Result:
    s = sizes(lab.options.quick)
    queues = {p: lab.queue(f"p{p}") for p in s["probabilities"]}
    outage_queue = lab.queue("outage")
    rows: list[dict[str, Any]] = []
    complete = True
    async with lab.poller("--poll-interval", str(s["poll_interval"])) as poller, \
            lab.workers([*queues.values(), outage_queue], s["workers"], s["concurrency"]) as workers:
        def check() -> None:
            workers.check()
            poller.check()

        for p, queue in queues.items():
            n = s["tasks_per_p"]
            requests = [SubmitRequest("experiment.flaky", {"p": p, "seed": seed, "i": i}, queue=queue)
                        for i in range(n)]
            with lab.meter.phase(f"retries: p = {p:g}", n) as show:
                await lab.submit_all(requests)
                complete &= await lab.wait_done([queue], n, lab.options.timeout, show, check)
            rows += [_row(t, f"p={p:g}", p) for t in await lab.read_back(queue)]
        n = round(s["outage_rate"] * s["outage_duration"])
        start = time.time()
        window = [start + s["outage_window"][0], start + s["outage_window"][1]]
        with lab.meter.phase("retries: outage", n) as show:
            await lab.open_loop([i / s["outage_rate"] for i in range(n)], lambda i: SubmitRequest(
                "experiment.outage", {"p": 0.0, "seed": seed, "i": i, "outage": window}, queue=outage_queue),
                show, check)
            complete &= await lab.wait_done([outage_queue], n, lab.options.timeout, show, check)
        rows += [_row(t, "outage", 0.0, since=start) for t in await lab.read_back(outage_queue)]
    return _analyse(rows, s, complete, lab.notes, window, start)


def _row(task: Task, phase: str, p: float, since: float | None = None) -> dict[str, Any]:
    """The task's row, with each attempt's start and the gaps between attempts (its history holds the failed
    ones; the last is the task's own started_at when it succeeded)."""
    failed = [a for a in task.history if a.started_at is not None]
    starts = [a.started_at for a in failed]
    if task.status.value == "succeeded" and task.started_at is not None:
        starts.append(task.started_at)
    gaps, delays, numbers = [], [], []
    for a, following in zip(failed, starts[1:], strict=False):
        if a.finished_at is not None and a.delay is not None and following is not None:
            gaps.append(round(following - a.finished_at, 6))
            delays.append(round(a.delay, 6))
            numbers.append(a.number)
    offsets = [round(t - since, 4) for t in starts if t is not None] if since is not None else []
    return row(task, phase=phase, p=p, attempt_numbers=";".join(map(str, numbers)),
               delays=";".join(map(str, delays)), gaps=";".join(map(str, gaps)),
               attempt_offsets=";".join(map(str, offsets)))


def _floats(cell: str) -> list[float]:
    return [float(x) for x in cell.split(";") if x]


def envelope(policy: RetryPolicy, n: int) -> tuple[float, float]:
    """The delays the policy may choose before retry n: [d(1 - jitter), d], d = min(cap, base * 2**(n-1))."""
    nominal = min(policy.cap, policy.base * 2 ** (n - 1))
    return nominal * (1 - policy.jitter), nominal


def _analyse(rows: list[dict[str, Any]], s: dict[str, Any], complete: bool, notes: list[str], window: list[float],
             start: float) -> Result:
    per_p: dict[str, Any] = {}
    headline: dict[str, float | None] = {}
    for p in s["probabilities"]:
        mine = [r for r in rows if r["phase"] == f"p={p:g}"]
        observed = Counter(int(r["attempts"]) for r in mine)
        expected = attempts_expected(p, s["max_attempts"])
        dead = [r for r in mine if r["status"] == "dead"]
        per_p[f"{p:g}"] = {
            "tasks": len(mine), "attempts_observed": {k: observed.get(k, 0) for k in range(1, s["max_attempts"] + 1)},
            "attempts_expected": {k: round(v * len(mine), 2) for k, v in expected.items()},
            "total_variation": total_variation(observed, expected),
            "dead_fraction": round(len(dead) / len(mine), 4) if mine else None,
            "dead_expected": round(p ** s["max_attempts"], 5),
            "dead_with_all_attempts": all(int(r["attempts"]) == s["max_attempts"] for r in dead),
            "most_attempts": max(observed, default=0)}
        headline[f"tv_p{p:g}"] = per_p[f"{p:g}"]["total_variation"]
        headline[f"dead_p{p:g}"] = per_p[f"{p:g}"]["dead_fraction"]
    inside, total, lags = 0, 0, []
    policy = RetryPolicy(s["retry_base"], s["retry_cap"], s["jitter"])
    for r in rows:
        if r["phase"] == "outage":
            continue
        for n, delay, gap in zip(_floats(r["attempt_numbers"]), _floats(r["delays"]), _floats(r["gaps"]), strict=True):
            low, high = envelope(policy, int(n))
            total += 1
            inside += low - 1e-6 <= delay <= high + 1e-6
            lags.append(gap - delay)
    outage = [r for r in rows if r["phase"] == "outage"]
    timeline = _timeline(outage)
    during = [c for t, c in timeline["total"] if window[0] - start <= t < window[1] - start]
    after = [c for t, c in timeline["total"] if t >= window[1] - start]
    outage_summary = {"tasks": len(outage), "succeeded": sum(r["status"] == "succeeded" for r in outage),
                      "dead": sum(r["status"] == "dead" for r in outage),
                      "window_s": [round(w - start, 3) for w in window],
                      "attempts": dict(sorted(Counter(int(r["attempts"]) for r in outage).items())),
                      "peak_attempts_per_s_during": max(during, default=0) / BIN,
                      "peak_attempts_per_s_after": max(after, default=0) / BIN,
                      "arrival_rate": s["outage_rate"]}
    headline["delays_in_envelope"] = round(inside / total, 4) if total else None
    headline["promotion_lag_p95_ms"] = summary(lags)["p95"] if lags else None
    headline["outage_dead"] = outage_summary["dead"]
    return Result(rows, {"by_probability": per_p, "backoff": {
        "retries": total, "delays_in_envelope": inside, "lag_after_delay_ms": summary(lags)},
        "outage": outage_summary, "timeline": timeline, "sizes": s}, headline, complete, list(notes))


def _timeline(rows: Sequence[dict[str, Any]]) -> dict[str, list[tuple[float, int]]]:
    """Attempt starts per BIN seconds since the outage phase began, by attempt number (4 and up together)."""
    counts: dict[str, Counter[int]] = {"first": Counter(), "second": Counter(), "third": Counter(),
                                       "fourth+": Counter(), "total": Counter()}
    names = ["first", "second", "third"]
    for r in rows:
        for k, offset in enumerate(_floats(r["attempt_offsets"])):
            slot = int(offset // BIN)
            counts[names[k] if k < 3 else "fourth+"][slot] += 1
            counts["total"][slot] += 1
    end = max(counts["total"], default=0) + 1
    return {name: [(round(i * BIN, 3), c.get(i, 0)) for i in range(end)] for name, c in counts.items()}


def figures(results: Sequence[Result]) -> list[plots.Figure]:
    first = results[0]
    per_p, s, timeline = first.summary["by_probability"], first.summary["sizes"], first.summary["timeline"]

    def histogram(axes: list[Any]) -> None:
        for ax, (p, v) in zip(axes, per_p.items(), strict=True):
            ks = list(range(1, s["max_attempts"] + 1))
            ax.bar([k - 0.2 for k in ks], [v["attempts_observed"][k] for k in ks], width=0.4, label="observed")
            ax.bar([k + 0.2 for k in ks], [v["attempts_expected"][k] for k in ks], width=0.4, label="expected",
                   alpha=0.7)
            ax.set_xlabel(f"attempts (the last bar: {s['max_attempts']}, success or dead)")
            ax.set_ylabel("tasks")
            ax.set_title(f"p = {p}: TV distance {v['total_variation']}, dead {v['dead_fraction']:.1%} "
                         f"(expected {v['dead_expected']:.1%})", fontsize="small")
            ax.legend(fontsize="small")

    def backoff(axes: list[Any]) -> None:
        policy = RetryPolicy(s["retry_base"], s["retry_cap"], s["jitter"])
        rows = [r for r in first.rows if r["phase"] != "outage"]
        for kind, column, marker in (("chosen delay", "delays", "o"), ("observed gap", "gaps", "x")):
            xs, ys = [], []
            for r in rows:
                for i, (n, value) in enumerate(zip(_floats(r["attempt_numbers"]), _floats(r[column]), strict=True)):
                    xs.append(n + (-0.12 if marker == "o" else 0.12) + (i % 7 - 3) * 0.01)
                    ys.append(value)
            axes[0].plot(xs, ys, marker, markersize=2, alpha=0.4, label=kind)
        for n in range(1, s["max_attempts"]):
            low, high = envelope(policy, n)
            axes[0].fill_between([n - 0.3, n + 0.3], low, high, color="grey", alpha=0.25,
                                 label="configured envelope" if n == 1 else None)
        axes[0].set_xlabel("retry after attempt n")
        axes[0].set_ylabel("seconds")
        axes[0].set_title("backoff: chosen delay and observed gap against the envelope [d/2, d]")
        axes[0].legend(fontsize="small")
        axes[0].grid(True, alpha=0.3)
        layers = {k: [c for _, c in v] for k, v in timeline.items() if k != "total"}
        bins = [t for t, _ in timeline["total"]]
        plots.stacked(axes[1], bins, layers, width=BIN, xlabel="seconds since the first arrival",
                      ylabel=f"attempts started per {BIN:g} s", title="outage: attempts over time by attempt number")
        w = first.summary["outage"]["window_s"]
        axes[1].axvspan(w[0], w[1], color="red", alpha=0.12, label="outage", zorder=0)
        axes[1].legend(fontsize="small")

    return [plots.Figure("retries_attempts.png", "Attempts per task, observed against the truncated geometric "
                         "expectation, for each failure probability", histogram, panels=len(per_p)),
            plots.Figure("retries_backoff.png", "Left: each retry's chosen delay and observed gap against the "
                         "configured envelope. Right: attempts started over time around an outage window",
                         backoff, panels=2)]


def findings(results: Sequence[Result]) -> list[str]:
    first = results[0]
    s, per_p = first.summary["sizes"], first.summary["by_probability"]
    table = ["| p | tasks | attempts 1..5 observed | expected | TV distance | dead | dead expected (p^5) |",
             "|---|---|---|---|---|---|---|"]
    for p, v in per_p.items():
        obs = " / ".join(str(v["attempts_observed"][k]) for k in range(1, s["max_attempts"] + 1))
        exp = " / ".join(f"{v['attempts_expected'][k]:.1f}" for k in range(1, s["max_attempts"] + 1))
        table.append(f"| {p} | {v['tasks']} | {obs} | {exp} | {v['total_variation']} | {v['dead_fraction']:.2%} | "
                     f"{v['dead_expected']:.2%} |")
    b, o = first.summary["backoff"], first.summary["outage"]
    lag = b["lag_after_delay_ms"]
    return ["\n".join(table),
            f"Backoff: {b['delays_in_envelope']} of {b['retries']} retries were given a delay inside the configured "
            f"envelope [d/2, d]. The observed gap exceeds the chosen delay by p50 {lag['p50']} ms, p95 {lag['p95']} "
            f"ms (max {lag['max']} ms): the poller promotes a due retry at its next tick (every "
            f"{s['poll_interval']:g} s) and a worker then claims it.",
            f"Outage: {o['tasks']} tasks at {o['arrival_rate']:g}/s; every attempt failed from "
            f"{o['window_s'][0]:g} s to {o['window_s'][1]:g} s. {o['succeeded']} succeeded and {o['dead']} were "
            f"dead-lettered; attempts per task {o['attempts']}. Attempts started peaked at "
            f"{o['peak_attempts_per_s_during']:g}/s during the outage and {o['peak_attempts_per_s_after']:g}/s "
            "after it (arrivals plus the retries coming due): the jittered, doubling backoff spreads the retry "
            "wave rather than sending it back as one burst."]

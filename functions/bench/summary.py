"""Figures derived from the phases once they have run: each hexq figure's ratio to its baseline, and
Redis's CPU per task by operation (the issue's "enqueue + claim + settle" reading).

Pure functions over the report's dicts, so tests can check the arithmetic without running anything.
"""

from __future__ import annotations

from typing import Any

Figures = dict[str, Any]


def attach_ratios(enqueue: dict[str, Figures | None], drains: list[Figures] | None,
                  baselines: dict[str, Figures | None] | None) -> None:
    """Give every hexq figure `baseline_per_second` and `ratio` (its tasks/s over the baseline's): each
    enqueue phase against the baseline of the same name, every drain row against the one-process drain."""
    base = baselines or {}
    for name, figures in enqueue.items():
        if figures is not None:
            _ratio(figures, base.get(name))
    for row in drains or []:
        _ratio(row, base.get("drain"))


def _ratio(figures: Figures, baseline: Figures | None) -> None:
    reference = baseline["per_second"] if baseline is not None else None
    figures["baseline_per_second"] = reference
    figures["ratio"] = ratio(figures["per_second"], reference)


def ratio(value: float | None, reference: float | None) -> float | None:
    return round(value / reference, 3) if value and reference else None


def redis_cpu(enqueue: dict[str, Figures | None], drains: list[Figures] | None, latency: Figures | None,
              baselines: dict[str, Figures | None] | None, served: Figures | None = None) -> list[Figures] | None:
    """Redis's µs per task by operation: each enqueue phase, claim + settle in each drain, their sums (bulk
    enqueue + a batching drain; 1-by-1 enqueue + a drain of concurrency 1), and the latency phases (one by
    one at a steady rate, the server's wake-ups from idle included), each beside its baseline's figure."""
    base = baselines or {}
    rows: list[Figures] = []

    def add(operation: str, usage: Figures | None, baseline: Figures | None = None) -> None:
        if usage is not None:
            reference = baseline["redis"] if baseline is not None else None
            rows.append({"operation": operation, **_cpu(usage), "baseline": _cpu(reference) if reference else None})

    for name, label in (("client", "enqueue, 1 by 1"), ("client_concurrent", "enqueue, concurrent"),
                        ("http", "enqueue, HTTP sequential"), ("http_concurrent", "enqueue, HTTP concurrent"),
                        ("bulk", "enqueue, bulk")):
        figures = enqueue.get(name)
        add(label, figures and figures["redis"], base.get(name))
    for row in drains or []:
        shape = f"{row['workers']} x {row['concurrency']}"
        add(f"claim + settle, drain {shape}", row["redis"], base.get("drain"))
        # A drain of concurrency 1 claims and settles one task at a time: with the one-by-one enqueue, that
        # is the one-by-one total; any other drain batches both, and goes with the bulk enqueue.
        one = row["concurrency"] == 1
        enq = enqueue.get("client" if one else "bulk")
        if enq is not None and enq["redis"] is not None and row["redis"] is not None:
            what = "one by one: enqueue 1 by 1" if one else "batched: bulk enqueue"
            rows.append({"operation": f"{what} + drain {shape}", **_sum(enq["redis"], row["redis"]),
                         "baseline": None})
    add("at --rate: submit, claim, settle (latency phase)", latency and latency["redis"])
    add("at --rate under hexq serve (serve phase)", served and served["redis"])
    return rows or None


def _cpu(usage: Figures) -> Figures:
    return {key: usage[key] for key in ("commands_us_per_task", "server_cpu_us_per_task", "calls_per_task")}


def _sum(*usages: Figures) -> Figures:
    out: Figures = {}
    for key in ("commands_us_per_task", "server_cpu_us_per_task", "calls_per_task"):
        values = [usage[key] for usage in usages]
        out[key] = None if None in values else round(sum(values), 2)
    return out

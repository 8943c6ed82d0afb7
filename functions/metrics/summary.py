"""The dashboard's view of the counts: queue-wait and duration histograms and two counters, as JSON.

Read from the same collectors as the /metrics scrape (exposition.counted): this process's registry, or in
`hexq serve`'s multiprocess mode every process's files merged, so the figures match what Prometheus scrapes.
hexq_task_queue_wait_seconds is summed over types and queues by priority, hexq_task_duration_seconds by
status; each keeps its bucket bounds, the count in each bucket (not cumulative; the last is above the last
bound), and p50/p95/p99 estimated from the buckets as PromQL's histogram_quantile does.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from hexq.functions.metrics.exposition import counted
from hexq.functions.metrics.process import Metrics

QUANTILES = (0.5, 0.95, 0.99)
# (family, the label it is split by, key in the summary)
HISTOGRAMS = (("hexq_task_queue_wait_seconds", "priority", "queue_wait"),
              ("hexq_task_duration_seconds", "status", "duration"))
COUNTERS = (("hexq_lease_recoveries", "lease_recoveries"), ("hexq_fencing_rejections", "fencing_rejections"))


def summary(metrics: Metrics | None) -> dict[str, Any]:
    """{"metrics": false} with metrics off; else the histograms and counters (see the module's docstring)."""
    if metrics is None:
        return {"metrics": False}
    families = {family.name: family for collector in counted(metrics) for family in collector.collect()}
    out: dict[str, Any] = {"metrics": True, "multiprocess": metrics.multiprocess}
    for name, by, key in HISTOGRAMS:
        family = families.get(name)
        out[key] = {"by": by, "series": _histograms(family.samples if family else [], name, by)}
    for name, key in COUNTERS:
        family = families.get(name)
        out[key] = sum(s.value for s in family.samples if s.name == name + "_total") if family else 0
    return out


def _histograms(samples: Iterable[Any], name: str, by: str) -> dict[str, dict[str, Any]]:
    cumulative: dict[str, dict[float, float]] = {}
    sums: dict[str, float] = {}
    for sample in samples:
        group = sample.labels.get(by, "other")
        if sample.name == name + "_bucket":
            bound = float(sample.labels["le"])
            per = cumulative.setdefault(group, {})
            per[bound] = per.get(bound, 0.0) + sample.value
        elif sample.name == name + "_sum":
            sums[group] = sums.get(group, 0.0) + sample.value
    return {group: _series(per, sums.get(group, 0.0)) for group, per in sorted(cumulative.items())
            if per.get(math.inf, 0.0) > 0}


def _series(cumulative: dict[float, float], total_seconds: float) -> dict[str, Any]:
    bounds = sorted(cumulative)
    running = [cumulative[b] for b in bounds]
    counts = [int(c - p) for c, p in zip(running, [0.0, *running[:-1]], strict=True)]
    finite = [b for b in bounds if math.isfinite(b)]
    return {"bounds": finite, "counts": counts, "count": int(running[-1]), "sum": total_seconds,
            **{f"p{round(q * 100)}": quantile(q, bounds, running) for q in QUANTILES}}


def quantile(q: float, bounds: Sequence[float], cumulative: Sequence[float]) -> float | None:
    """histogram_quantile: linear within the bucket the rank falls in; the highest finite bound when it falls
    in the +Inf bucket; None for an empty histogram."""
    if not cumulative or cumulative[-1] <= 0:
        return None
    rank = q * cumulative[-1]
    for i, (bound, count) in enumerate(zip(bounds, cumulative, strict=True)):
        if count >= rank:
            if math.isinf(bound):
                return bounds[i - 1] if i > 0 else None
            lower, below = (bounds[i - 1], cumulative[i - 1]) if i > 0 else (0.0, 0.0)
            inside = count - below
            return bound if inside <= 0 else lower + (bound - lower) * (rank - below) / inside
    return None

"""Open-loop runs shared by baseline, load and stress: Poisson arrivals, latency from the scheduled time."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from hexq.core.services import SubmitRequest
from hexq.functions.experiment.lab import Lab, Processes, poisson, row
from hexq.functions.experiment.stats import summary


async def offered(lab: Lab, workers: Processes, queue: str, rate: float, duration: float, warmup: float,
                  rng: random.Random, make: Callable[[int], SubmitRequest], label: str,
                  check: Callable[[], None] | None = None, **extra: Any) -> tuple[list[dict[str, Any]], bool]:
    """Submit Poisson arrivals at `rate` for `duration` seconds, wait until they are done and return their rows:
    `to_start` and `to_finish` are measured from each task's scheduled moment (late + the backend's stamps);
    tasks scheduled in the first `warmup` seconds are marked, and left out of the figures."""
    offsets = poisson(rng, rate, duration)
    with lab.meter.phase(label, len(offsets)) as show:
        sent = await lab.open_loop(offsets, make, show, check or workers.check)
        complete = await lab.wait_done([queue], len(sent), lab.options.timeout, show, check or workers.check)
    by_id = {s.task_id: s for s in sent}
    rows = []
    for task in await lab.read_back(queue):
        s = by_id.get(task.id)
        late = s.late if s else 0.0
        r = row(task, scheduled=round(s.scheduled, 6) if s else None, late=round(late, 6),
                warmup=bool(s and s.scheduled < warmup), **extra)
        r["to_start"] = None if r["wait"] is None else round(r["wait"] + late, 6)
        r["to_finish"] = None if task.finished_at is None else round(task.finished_at - task.created_at + late, 6)
        rows.append(r)
    return rows, complete


def figures_of(rows: Sequence[dict[str, Any]], duration: float) -> dict[str, Any]:
    """Percentiles (ms) of the measured tasks (warm-up left out), the achieved rate and the submitter's lateness."""
    measured = [r for r in rows if not r["warmup"]]
    done = [r for r in measured if r["finished_at"] is not None]
    return {"tasks": len(rows), "measured": len(measured), "completed": len(done),
            "to_start_ms": summary([r["to_start"] for r in measured if r["to_start"] is not None]),
            "to_finish_ms": summary([r["to_finish"] for r in measured if r["to_finish"] is not None]),
            "late_ms": summary([r["late"] for r in measured]),
            "offered_per_s": round(len(rows) / duration, 2) if duration > 0 else None,
            "achieved_per_s": _achieved(rows)}


def _achieved(rows: Sequence[dict[str, Any]]) -> float | None:
    """Completions per second from the first arrival to the last finish."""
    created: list[float] = [r["created_at"] for r in rows]
    ends: list[float] = [r["finished_at"] for r in rows if r["finished_at"] is not None]
    if not created or not ends or max(ends) <= min(created):
        return None
    return round(len(ends) / (max(ends) - min(created)), 2)

"""The capacity of a set of workers: how fast they clear a backlog of the experiment's own tasks.

load and stress offer work as a share of this figure, so "100 %" means what these workers did on this
machine and backend a moment before, not a number assumed in advance.
"""

from __future__ import annotations

from typing import Any

from hexq.core.services import SubmitRequest
from hexq.functions.experiment.lab import Lab, Processes, first_start


async def measure(lab: Lab, queue: str, request: SubmitRequest, tasks: int, workers: Processes) -> dict[str, Any]:
    """Clear `tasks` copies of `request` from the paused `queue` that `workers` listen on; tasks per second
    from the first start to the last finish (the backend's stamps)."""
    await lab.container.queues.pause(queue)
    await lab.submit_all([request] * tasks)
    with lab.meter.phase("capacity", tasks) as show:
        await lab.container.queues.resume(queue)
        complete = await lab.wait_done([queue], tasks, lab.options.timeout, show, workers.check)
    done = [t for t in await lab.read_back(queue) if t.finished_at is not None]
    starts = [s for t in done if (s := first_start(t)) is not None]
    seconds = max(t.finished_at or 0.0 for t in done) - min(starts) if done and starts else 0.0
    return {"tasks": len(done), "seconds": round(seconds, 3), "complete": complete,
            "per_second": round(len(done) / seconds, 2) if seconds > 0 else None}

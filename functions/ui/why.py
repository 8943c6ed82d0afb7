"""Why a task is waiting: the reasons GET /v1/tasks/{id}/why gives for a queued or scheduled task.

A pure function of what the API can read cheaply on every backend: the task, GET /v1/stats (depths and the
paused queues), the live workers, the type's registration and the tenant cap. "Ahead" is an upper bound: the
stats count the queued tasks of a queue and priority, not which of them were queued first, so a task is told
"at most N ahead" — every queued task at a higher priority of its queue, and the others at its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hexq.core.model import Priority, Stats, Task, TaskStatus, WorkerInfo
from hexq.core.registry import TaskSpec

Reason = dict[str, Any]


def reasons(task: Task, stats: Stats, workers: Sequence[WorkerInfo], spec: TaskSpec | None, *, tenant_cap: int,
            now: float) -> list[Reason]:
    """What may hold `task` back, most telling first; [] for a task that is not waiting. Each reason has a
    `kind`, a `message` to show, and its figures."""
    if task.status not in (TaskStatus.QUEUED, TaskStatus.SCHEDULED):
        return []
    found: list[Reason] = []
    if task.status is TaskStatus.SCHEDULED and task.run_at > now:
        found.append({"kind": "delayed", "until": task.run_at, "seconds": task.run_at - now,
                      "message": f"delayed: due in {_seconds(task.run_at - now)} (a delay, or a retry's backoff)"})
    if task.queue in stats.paused:
        found.append({"kind": "paused", "queue": task.queue,
                      "message": f"queue {task.queue!r} is paused: workers claim none of its tasks until it is "
                                 "resumed"})
    serving = [w.id for w in workers if task.queue in w.queues]
    if not serving:
        found.append({"kind": "no_worker", "queue": task.queue,
                      "message": f"no live worker serves queue {task.queue!r}"})
    found.append(_ahead(task, stats))
    if spec is not None and spec.rate:
        found.append({"kind": "rate_limit", "rate": spec.rate,
                      "message": f"type {spec.name!r} starts at most {spec.rate:g} a second across all workers"})
    if spec is not None and spec.concurrency:
        found.append({"kind": "concurrency", "concurrency": spec.concurrency,
                      "message": f"type {spec.name!r} runs at most {spec.concurrency} at once per worker"})
    if tenant_cap:
        found.append({"kind": "tenant_cap", "cap": tenant_cap, "tenant": task.tenant,
                      "message": f"tenant {task.tenant!r} may have {tenant_cap} waiting tasks: it refuses submits "
                                 "past that, and holds back none"})
    return found


def _ahead(task: Task, stats: Stats) -> Reason:
    levels = stats.queued.get(task.queue, {})
    same = max(0, levels.get(task.priority, 0) - (task.status is TaskStatus.QUEUED))  # not counting itself
    higher = sum(n for level, n in levels.items() if level > task.priority)
    name = Priority(task.priority).name.lower()
    return {"kind": "ahead", "at_most": same + higher, "same_priority": same, "higher_priority": higher,
            "message": f"at most {same} queued ahead at {name} priority and {higher} at higher ones in "
                       f"queue {task.queue!r}"}


def _seconds(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"

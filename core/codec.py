"""Tasks and schedules to and from plain JSON-ready dicts: the one wire and storage shape."""

from __future__ import annotations

from typing import Any

from hexq.core.model import Attempt, AttemptOutcome, Priority, Task, TaskStatus
from hexq.core.schedule import Schedule


def task_to_dict(task: Task) -> dict[str, Any]:
    return {
        "id": task.id,
        "type": task.type,
        "payload": dict(task.payload),
        "queue": task.queue,
        "priority": task.priority.name.lower(),
        "status": task.status.value,
        "attempts": task.attempts,
        "max_attempts": task.max_attempts,
        "timeout": task.timeout,
        "run_at": task.run_at,
        "delay": task.delay,
        "created_at": task.created_at,
        "started_at": task.started_at,
        "finished_at": task.finished_at,
        "worker_id": task.worker_id,
        "result": task.result,
        "error": task.error,
        "traceback": task.traceback,
        "idempotency_key": task.idempotency_key,
        "tenant": task.tenant,
    } | ({"history": history_to_list(task.history)} if task.history else {})  # most tasks have none: no key


def task_from_dict(data: dict[str, Any]) -> Task:
    """Inverse of task_to_dict, for trusted (stored) data only. A record without `history` (every task
    that never failed, and records stored before there was one) has none."""
    fields = dict(data)
    fields["priority"] = Priority.parse(fields["priority"])
    fields["status"] = TaskStatus(fields["status"])
    if "history" in fields:
        fields["history"] = history_from_list(fields["history"])
    return Task(**fields)


def attempt_to_dict(attempt: Attempt) -> dict[str, Any]:
    return {"number": attempt.number, "outcome": attempt.outcome.value, "worker_id": attempt.worker_id,
            "token": attempt.token, "started_at": attempt.started_at, "finished_at": attempt.finished_at,
            "error": attempt.error, "traceback": attempt.traceback, "delay": attempt.delay}


def history_to_list(history: tuple[Attempt, ...]) -> list[dict[str, Any]]:
    """The history as stored: each attempt without its nulls."""
    return [{name: value for name, value in attempt_to_dict(a).items() if value is not None} for a in history]


def history_from_list(entries: list[dict[str, Any]] | None) -> tuple[Attempt, ...]:
    if not entries:
        return ()
    return tuple(Attempt(**(entry | {"outcome": AttemptOutcome(entry["outcome"])})) for entry in entries)


def schedule_to_dict(schedule: Schedule) -> dict[str, Any]:
    return {
        "name": schedule.name,
        "spec": schedule.spec,
        "type": schedule.type,
        "payload": dict(schedule.payload),
        "queue": schedule.queue,
        "priority": schedule.priority.name.lower(),
        "next_run": schedule.next_run,
        "last_run": schedule.last_run,
        "enabled": schedule.enabled,
        "tenant": schedule.tenant,
    }


def schedule_from_dict(data: dict[str, Any]) -> Schedule:
    fields = dict(data)
    fields["priority"] = Priority.parse(fields["priority"])
    return Schedule(**fields)

"""Tasks and schedules to and from SQLite rows. Payloads and results are JSON text."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from hexq.core.model import Priority, Task, TaskStatus
from hexq.core.schedule import Schedule

TASK_COLUMNS = ("id", "type", "payload", "queue", "priority", "status", "attempts", "max_attempts", "timeout",
                "run_at", "delay", "created_at", "started_at", "finished_at", "worker_id", "result", "error",
                "traceback", "idempotency_key", "tenant")
SELECT_TASKS = f"SELECT seq, {', '.join(TASK_COLUMNS)} FROM tasks"
SELECT_LEASED = f"SELECT seq, {', '.join(TASK_COLUMNS)}, cancel_requested FROM tasks"  # running tasks
INSERT_TASK = f"INSERT INTO tasks ({', '.join(TASK_COLUMNS)}) VALUES ({', '.join('?' * len(TASK_COLUMNS))})"
# Writes a task's whole state (all but its id) and drops its lease; the caller adds the WHERE clause.
UPDATE_TASK = ("UPDATE tasks SET " + ", ".join(f"{c} = ?" for c in TASK_COLUMNS[1:])
               + ", lease_token = NULL, lease_expires = NULL, cancel_requested = 0")

SCHEDULE_COLUMNS = ("name", "spec", "type", "payload", "queue", "priority", "next_run", "last_run", "enabled",
                    "tenant")
SELECT_SCHEDULES = f"SELECT {', '.join(SCHEDULE_COLUMNS)} FROM schedules"
PUT_SCHEDULE = (f"INSERT OR REPLACE INTO schedules ({', '.join(SCHEDULE_COLUMNS)})"
                f" VALUES ({', '.join('?' * len(SCHEDULE_COLUMNS))})")


def _dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def task_values(task: Task) -> tuple[Any, ...]:
    """Parameters in TASK_COLUMNS order."""
    return (task.id, task.type, _dump(dict(task.payload)), task.queue, int(task.priority), task.status.value,
            task.attempts, task.max_attempts, task.timeout, task.run_at, task.delay, task.created_at, task.started_at,
            task.finished_at, task.worker_id, None if task.result is None else _dump(task.result), task.error,
            task.traceback, task.idempotency_key, task.tenant)


def task_from_row(row: sqlite3.Row) -> Task:
    return Task(
        id=row["id"],
        type=row["type"],
        payload=json.loads(row["payload"]),
        queue=row["queue"],
        priority=Priority(row["priority"]),
        status=TaskStatus(row["status"]),
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        timeout=row["timeout"],
        run_at=row["run_at"],
        delay=row["delay"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        worker_id=row["worker_id"],
        result=None if row["result"] is None else json.loads(row["result"]),
        error=row["error"],
        traceback=row["traceback"],
        idempotency_key=row["idempotency_key"],
        tenant=row["tenant"],
    )


def schedule_values(schedule: Schedule) -> tuple[Any, ...]:
    """Parameters in SCHEDULE_COLUMNS order."""
    return (schedule.name, schedule.spec, schedule.type, _dump(dict(schedule.payload)), schedule.queue,
            int(schedule.priority), schedule.next_run, schedule.last_run, int(schedule.enabled), schedule.tenant)


def schedule_from_row(row: sqlite3.Row) -> Schedule:
    return Schedule(
        name=row["name"],
        spec=row["spec"],
        type=row["type"],
        payload=json.loads(row["payload"]),
        queue=row["queue"],
        priority=Priority(row["priority"]),
        next_run=row["next_run"],
        last_run=row["last_run"],
        enabled=bool(row["enabled"]),
        tenant=row["tenant"],
    )

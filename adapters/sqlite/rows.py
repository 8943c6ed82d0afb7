"""Tasks and schedules to and from SQLite rows. Payloads and results are JSON text (codec).

Rows are plain tuples, read by position: SELECT_TASKS's columns are `seq` and then TASK_COLUMNS, in order.
"""

from __future__ import annotations

from typing import Any

from hexq.adapters.sqlite.codec import dumps, loads
from hexq.core.codec import history_from_list, history_to_list
from hexq.core.model import Attempt, Lease, Priority, Task, TaskQuery, TaskStatus
from hexq.core.schedule import Schedule

TASK_COLUMNS = ("id", "type", "payload", "queue", "priority", "status", "attempts", "max_attempts", "timeout",
                "run_at", "delay", "created_at", "started_at", "finished_at", "worker_id", "result", "error",
                "traceback", "idempotency_key", "tenant", "history")
SELECT_TASKS = f"SELECT seq, {', '.join(TASK_COLUMNS)} FROM tasks"
SELECT_LEASED = f"SELECT seq, {', '.join(TASK_COLUMNS)}, cancel_requested FROM tasks"  # running tasks
CANCEL_REQUESTED = len(TASK_COLUMNS) + 1  # SELECT_LEASED's last column
# LeaseReader: SELECT_LEASED's columns, then the lease's token and expiry
SELECT_LEASES = f"SELECT seq, {', '.join(TASK_COLUMNS)}, cancel_requested, lease_token, lease_expires FROM tasks"
INSERT_TASK = f"INSERT INTO tasks ({', '.join(TASK_COLUMNS)}) VALUES ({', '.join('?' * len(TASK_COLUMNS))})"
# Writes a task's whole state (all but its id) and drops its lease; the caller adds the WHERE clause.
UPDATE_TASK = ("UPDATE tasks SET " + ", ".join(f"{c} = ?" for c in TASK_COLUMNS[1:])
               + ", lease_token = NULL, lease_expires = NULL, cancel_requested = 0")

SCHEDULE_COLUMNS = ("name", "spec", "type", "payload", "queue", "priority", "next_run", "last_run", "enabled",
                    "tenant")
SELECT_SCHEDULES = f"SELECT {', '.join(SCHEDULE_COLUMNS)} FROM schedules"
PUT_SCHEDULE = (f"INSERT OR REPLACE INTO schedules ({', '.join(SCHEDULE_COLUMNS)})"
                f" VALUES ({', '.join('?' * len(SCHEDULE_COLUMNS))})")

_STATUSES = {status.value: status for status in TaskStatus}


def query_filters(q: TaskQuery) -> tuple[list[str], list[object]]:
    """A listing's filters as WHERE terms and their parameters (all but the cursor and the search). They are
    checked on the rows the listing walks newest first (tasks_listing by status and seq, or the primary key;
    the planner may use the claim's tasks_ready for status=queued with a queue and a priority, then sort by
    seq): an index on created_at would cost every
    submit one more B-tree write, and the rows of a window would still have to be sorted by seq."""
    filters = {"status": q.status.value if q.status else None, "type": q.type, "queue": q.queue, "tenant": q.tenant,
               "priority": None if q.priority is None else int(q.priority)}
    where = [f"{column} = ?" for column, value in filters.items() if value is not None]
    params: list[object] = [value for value in filters.values() if value is not None]
    if q.created_after is not None:
        where.append("created_at >= ?")
        params.append(q.created_after)
    if q.created_before is not None:
        where.append("created_at < ?")
        params.append(q.created_before)
    return where, params


def task_values(task: Task, payload: str | None = None) -> tuple[Any, ...]:
    """Parameters in TASK_COLUMNS order; `payload` is the task's payload as JSON, if it was encoded already."""
    return (task.id, task.type, dumps(dict(task.payload)) if payload is None else payload, task.queue,
            int(task.priority), task.status.value, task.attempts, task.max_attempts, task.timeout, task.run_at,
            task.delay, task.created_at, task.started_at, task.finished_at, task.worker_id,
            None if task.result is None else dumps(task.result), task.error, task.traceback, task.idempotency_key,
            task.tenant, dumps(history_to_list(task.history)) if task.history else None)


def task_from_row(row: tuple[Any, ...]) -> Task:
    """A row of SELECT_TASKS (or SELECT_LEASED) as a Task."""
    return Task(id=row[1], type=row[2], payload=loads(row[3]), queue=row[4], priority=Priority(row[5]),
                status=_STATUSES[row[6]], attempts=row[7], max_attempts=row[8], timeout=row[9], run_at=row[10],
                delay=row[11], created_at=row[12], started_at=row[13], finished_at=row[14], worker_id=row[15],
                result=None if row[16] is None else loads(row[16]), error=row[17], traceback=row[18],
                idempotency_key=row[19], tenant=row[20], history=_history(row[21]))


def lease_from_row(row: tuple[Any, ...]) -> Lease:
    """A row of SELECT_LEASES as the lease it holds."""
    return Lease(task_from_row(row), row[CANCEL_REQUESTED + 1], row[CANCEL_REQUESTED + 2], bool(row[CANCEL_REQUESTED]))


def started_from_row(row: tuple[Any, ...], now: float, worker_id: str) -> Task:
    """A queued task's row as its claim leaves it: running, one more attempt, started now by `worker_id`
    (what Task.moved_to(RUNNING, ...) makes of task_from_row(row), built in one step)."""
    return Task(id=row[1], type=row[2], payload=loads(row[3]), queue=row[4], priority=Priority(row[5]),
                status=TaskStatus.RUNNING, attempts=row[7] + 1, max_attempts=row[8], timeout=row[9], run_at=row[10],
                delay=row[11], created_at=row[12], started_at=now, finished_at=row[14], worker_id=worker_id,
                result=None if row[16] is None else loads(row[16]), error=row[17], traceback=row[18],
                idempotency_key=row[19], tenant=row[20], history=_history(row[21]))


def _history(text: str | None) -> tuple[Attempt, ...]:
    return () if text is None else history_from_list(loads(text))


def schedule_values(schedule: Schedule) -> tuple[Any, ...]:
    """Parameters in SCHEDULE_COLUMNS order."""
    return (schedule.name, schedule.spec, schedule.type, dumps(dict(schedule.payload)), schedule.queue,
            int(schedule.priority), schedule.next_run, schedule.last_run, int(schedule.enabled), schedule.tenant)


def schedule_from_row(row: tuple[Any, ...]) -> Schedule:
    return Schedule(name=row[0], spec=row[1], type=row[2], payload=loads(row[3]), queue=row[4],
                    priority=Priority(row[5]), next_run=row[6], last_run=row[7], enabled=bool(row[8]), tenant=row[9])

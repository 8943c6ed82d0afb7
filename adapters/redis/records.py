"""Tasks and schedules to and from what the scripts take (ARGV) and return (records).

A task is stored as its hexq.core.codec JSON (`data`) plus a few plain fields the scripts index and
change. Scripts never re-encode the JSON (Lua's cjson would alter user data), so a claim writes
status, attempts, started_at and worker_id as fields, every write stamps its times on the server's
clock as fields (created_at, run_at, finished_at), and decode_task lays them over `data`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from hexq.adapters.redis.keys import check_part, idempotency_field
from hexq.core.codec import schedule_from_dict, schedule_to_dict, task_from_dict, task_to_dict
from hexq.core.model import Lease, Task
from hexq.core.schedule import Schedule

Arg = str | int | float
Record = Sequence[Any]  # the RECORD_FIELDS, in order (None where a field is absent)
RECORD_FIELDS = ("data", "status", "attempts", "started_at", "worker_id", "created_at", "run_at", "finished_at")
_TIMES = RECORD_FIELDS[5:]  # written by the scripts on the server's clock; absent on tasks stored before them

MAX_CURSOR_DIGITS = 18  # a seq fits a signed 64-bit integer


def number(value: float) -> str:
    """repr() is the shortest text that round-trips a double; the scripts parse it exactly."""
    return repr(float(value))


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def task_args(task: Task) -> list[Arg]:
    """The 11 values _lib.lua's task_at() reads, in its order. No time from this process's clock: the
    script stamps created_at, run_at (max(run_at, now + delay)) and finished_at with the server's."""
    return [check_part(task.id, "task id"), task.status.value, check_part(task.queue, "queue"), int(task.priority),
            task.type, task.tenant, task.attempts, number(task.run_at), number(task.delay),
            idempotency_field(task.tenant, task.idempotency_key), _dumps(task_to_dict(task))]


def decode_task(record: Record) -> Task:
    data, status, attempts, started_at, worker_id = record[:5]
    fields = json.loads(data)
    fields["status"] = status
    fields["attempts"] = int(attempts)
    if started_at is not None:  # written by a claim since the last full write
        fields["started_at"] = float(started_at)
    if worker_id is not None:
        fields["worker_id"] = worker_id
    for name, value in zip(_TIMES, record[5:8], strict=True):
        if value is not None:
            fields[name] = float(value)
    return task_from_dict(fields)


def decode_lease(record: Record) -> Lease:
    """A claim's or reclaim's entry: the task's record, then token, expiry and (reclaim only) the cancel mark."""
    return Lease(decode_task(record), int(record[8]), float(record[9]), len(record) > 10 and record[10] == "1")


def parse_cursor(cursor: str | None) -> str:
    """The seq a page continues below, or '' (from the newest) for anything that is not one.
    Cursors come from clients: str.isdigit alone accepts "²"."""
    if cursor and cursor.isascii() and cursor.isdigit() and len(cursor) <= MAX_CURSOR_DIGITS:
        return str(int(cursor))
    return ""


def schedule_values(schedule: Schedule) -> tuple[str, str]:
    """The schedule's JSON, and its runs as "<next_run>|<last_run>" (the part advance changes)."""
    last = "" if schedule.last_run is None else number(schedule.last_run)
    return _dumps(schedule_to_dict(schedule)), f"{number(schedule.next_run)}|{last}"


def decode_schedule(data: str, runs: str) -> Schedule:
    fields = json.loads(data)
    next_run, _, last_run = runs.partition("|")
    fields["next_run"] = float(next_run)
    fields["last_run"] = float(last_run) if last_run else None
    return schedule_from_dict(fields)

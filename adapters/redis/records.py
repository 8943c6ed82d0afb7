"""Tasks and schedules to and from what the scripts take (ARGV) and return (records).

A task is stored as one JSON field, `data` (hexq.core.codec's dict, serialised once, by orjson), plus
the few fields the scripts index, change or stamp (scripts/_lib.lua lists them). `data` leaves out
what those fields hold (status, attempts and the times the scripts stamp on the server's clock) and
every null, and decode_task lays the fields over it. Scripts never re-encode the JSON (Lua's cjson
would alter user data).

Per task, a script gets a few values: one line of the fields it parses ('<id> <queue> ...', every
part of it a key part, a number or a status, with the tenant last, as the rest of the line) and the
data. Few arguments keep redis-py's packing and the server's parsing cheap.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import orjson

from hexq.adapters import jsontext
from hexq.adapters.redis.keys import check_part, idempotency_field
from hexq.core import idempotency
from hexq.core.codec import schedule_from_dict, schedule_to_dict, task_from_dict, task_to_dict
from hexq.core.errors import ValidationError
from hexq.core.model import WAITING, Lease, Priority, Stats, Task, TaskStatus, WorkerInfo
from hexq.core.schedule import Schedule

Arg = str | bytes | int | float
Record = Sequence[Any]  # the RECORD_FIELDS, in order (None or '' where a field is absent)
RECORD_FIELDS = ("data", "status", "attempts", "started_at", "worker_id", "created_at", "run_at", "finished_at")
_OVERRIDES = RECORD_FIELDS[1:]  # hash fields laid over `data` where they are set
_HELD = ("status", "attempts", "created_at", "run_at", "finished_at")  # what every full write leaves in fields
_FLOATS = ("started_at", "created_at", "run_at", "finished_at")
_LEASED = ("started_at", "worker_id")

MAX_CURSOR_DIGITS = 18  # a seq fits a signed 64-bit integer


def number(value: float) -> str:
    """repr() is the shortest text that round-trips a double; the scripts parse it exactly."""
    return repr(float(value))


def dumps(value: Any) -> bytes:
    """JSON, by orjson; by the standard library where orjson refuses (an integer past 64 bits, a lone
    surrogate, a non-string key). (orjson writes NaN as null: hexq refuses NaN in payloads and results
    before they get here.)"""
    try:
        return orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(value, separators=(",", ":")).encode("utf-8", "surrogatepass")


loads = jsontext.loads  # orjson where it reads back exactly what was written, the standard library elsewhere


def data(task: Task) -> bytes:
    """The task's `data` field: its codec dict without the fields the hash holds, and without nulls."""
    fields = task_to_dict(task)
    return dumps({name: value for name, value in fields.items() if value is not None and name not in _HELD})


def enqueue_args(task: Task, step: float = 1.0) -> list[Arg]:
    """The values enqueue.lua reads per task. No time from this process's clock: the script stamps
    created_at and run_at (max(run_at, now + delay)) with the server's. `step`: 1 / the tenant's fair-queue
    weight (hexq.core.fairness)."""
    if task.status not in WAITING:
        raise ValidationError(f"a new task is queued or scheduled, not {task.status.value}", field="status")
    keyed = task.idempotency_key is not None
    head = (f"{check_part(task.id, 'task id')} {check_part(task.queue, 'queue')} {int(task.priority)} "
            f"{task.status.value} {int(task.attempts)} {number(task.run_at)} {number(task.delay)} "
            f"{check_part(task.type, 'type')} {int(keyed)} {'1' if step == 1.0 else number(step)} {task.tenant}")
    if not keyed:
        return [head, data(task)]
    return [head, data(task), idempotency_field(task.tenant, task.idempotency_key), idempotency.fingerprint(task)]


def settle_args(token: int, task: Task) -> list[Arg]:
    """The two values _settle.lua reads per settlement."""
    return [f"{check_part(task.id, 'task id')} {int(token)} {task.status.value} {int(task.attempts)} "
            f"{number(task.run_at)} {number(task.delay)}", data(task)]


def transition_args(task: Task) -> list[Arg]:
    return [f"{check_part(task.id, 'task id')} {task.status.value} {int(task.attempts)} {number(task.run_at)} "
            f"{number(task.delay)}", data(task)]


def lease_arg(lease: Lease) -> str:
    return f"{check_part(lease.task.id, 'task id')} {int(lease.token)}"


def decode_task(record: Record) -> Task:
    fields = loads(record[0])
    status = record[1]
    for name, value in zip(_OVERRIDES, record[1:8], strict=True):
        # None (absent) or '' (cleared): data's value stands. The claim's started_at and worker_id hold
        # only while the task runs: a full write since then put them in data.
        if value and (status == "running" or name not in _LEASED):
            fields[name] = value
    fields["attempts"] = int(fields["attempts"])
    for name in _FLOATS:
        if isinstance(fields.get(name), str):
            fields[name] = float(fields[name])
    return task_from_dict(fields)


def decode_claimed(entry: Record, started_at: str, expires_at: float, worker_id: str) -> Lease:
    """A claim's lease: {data, attempts, created_at, run_at, token} (scripts/_claim.lua)."""
    data_text, attempts, created_at, run_at, token = entry
    fields = loads(data_text)
    fields["status"] = TaskStatus.RUNNING.value
    fields["attempts"] = int(attempts)
    fields["started_at"] = float(started_at)
    fields["worker_id"] = worker_id
    if created_at:
        fields["created_at"] = float(created_at)
    if run_at:
        fields["run_at"] = float(run_at)
    return Lease(task_from_dict(fields), int(token), expires_at)


def decode_reclaimed(entry: Record, expires_at: float) -> Lease:
    """A reclaim's lease: the task's record, then its token and the cancel mark ('1' or '0')."""
    return Lease(decode_task(entry), int(entry[8]), expires_at, entry[9] == "1")


def decode_lease(entry: Record) -> Lease:
    """A lease as leases.lua answers it: the task's record, then its token, expiry (µs) and cancel mark."""
    return Lease(decode_task(entry), int(entry[8]), float(entry[9]) / 1_000_000, entry[10] == "1")


def parse_cursor(cursor: str | None) -> str:
    """The seq a page continues below, or '' (from the newest) for anything that is not one.
    Cursors come from clients: str.isdigit alone accepts "²"."""
    if cursor and cursor.isascii() and cursor.isdigit() and len(cursor) <= MAX_CURSOR_DIGITS:
        return str(int(cursor))
    return ""


def schedule_values(schedule: Schedule) -> tuple[str, str]:
    """The schedule's JSON, and its runs as "<next_run>|<last_run>" (the part advance changes)."""
    last = "" if schedule.last_run is None else number(schedule.last_run)
    return json.dumps(schedule_to_dict(schedule), separators=(",", ":")), f"{number(schedule.next_run)}|{last}"


def decode_schedule(data: str, runs: str) -> Schedule:
    fields = json.loads(data)
    next_run, _, last_run = runs.partition("|")
    fields["next_run"] = float(next_run)
    fields["last_run"] = float(last_run) if last_run else None
    return schedule_from_dict(fields)


# -- stats and workers (scripts/stats.lua, worker_beat.lua, workers.lua) ---------------------------
def decode_stats(statuses: Sequence[TaskStatus], counts: Sequence[Any], queues: Sequence[Sequence[Any]],
                 depth: Sequence[Any], now: float) -> Stats:
    """Stats from stats.lua's reply: depth is the flat running and depth-hash lists, one after the other."""
    queued: dict[str, dict[Priority, int]] = {}
    places: dict[tuple[str, Priority, str], int] = {}
    oldest: dict[tuple[str, Priority], float] = {}
    for row in queues:
        queue, levels = row[0], queued.setdefault(row[0], {})
        for priority in Priority:
            levels[priority] = count = int(row[1 + priority])
            since = row[5 + priority]
            if count:
                places[queue, priority, "queued"] = count
            if since:
                oldest[queue, priority] = now - float(since)
    for field, count in zip(depth[::2], depth[1::2], strict=True):
        state, level, queue = field.split("|", 2)
        places[queue, Priority(int(level)), state] = int(count)
    return Stats(dict(zip(statuses, map(int, counts), strict=True)), queued, places, oldest)


def worker_value(worker: WorkerInfo) -> bytes:
    return dumps({"host": worker.host, "pid": worker.pid, "queues": list(worker.queues)})


def decode_worker(worker_id: str, value: str) -> WorkerInfo:
    started, seen, running, rest = value.split("|", 3)
    info = loads(rest)
    return WorkerInfo(worker_id, info["host"], int(info["pid"]), tuple(info["queues"]), float(started), float(seen),
                      int(running))

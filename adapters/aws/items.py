"""The table's items: keys, tasks and schedules as DynamoDB attribute maps, sizes, update expressions.

One table, composite key (pk, sk):

    pk                      sk          what
    task#<id>               task        a task: every Task field as an attribute, plus seq, due, token,
                                        lease_expires and expires_at (the TTL) when they apply
    idem#<sha256>           idem        an idempotency key (tenant, key) -> task_id
    schedules               <name>      a schedule (one partition, so a Query lists them by name)
    bucket#<sha256>         bucket      a rate-limit token bucket
    counter                 counter     the seq and token counters (UpdateItem ADD)
    control                 paused      the paused queues: a string set `queues` (QueueControl, control.py)

Two sparse GSIs over task items only: `by-status` (status, seq) for listings and counts, and `by-due`
(status, due) for the sweeps, where `due` is the time that matters in that status: run_at when
scheduled, the lease expiry when running, when the message was sent when queued, finished_at when
succeeded or cancelled (none when dead). Numbers go over the wire as exact decimal text and JSON
values (payload, result) as strings, so floats and user data come back bit for bit.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from hexq.core.codec import history_from_list, history_to_list
from hexq.core.model import Priority, Task, TaskStatus
from hexq.core.schedule import Schedule

Value = dict[str, Any]  # one DynamoDB AttributeValue, e.g. {"S": "x"} or {"N": "1.5"}
Item = dict[str, Value]

MAX_ITEM_BYTES = 400_000  # DynamoDB refuses items over 400 KB (409,600 bytes); keep clear of it
# Room an enqueued task keeps for what a run adds: worker id, lease, error, and its first failed attempt in the
# history (an error of up to core.outcome.MAX_ATTEMPT_ERROR characters, a traceback of MAX_ATTEMPT_TRACEBACK).
# Later attempts may not fit a task near the limit: table.fit trims the history then.
SETTLE_HEADROOM = 2_000 + 3_500
KEY_AND_INDEX_BYTES = 400  # pk, sk, seq, due, token, lease_expires, expires_at: names and values, at most
MAX_ID_BYTES = 1_000  # a partition key may have 2,048 bytes; an id longer than this names no task
BY_STATUS = "by-status"
BY_DUE = "by-due"
# Projected into by-status for filters and stats (created_at: the listing's time window).
INDEX_ATTRIBUTES = ("type", "queue", "tenant", "priority", "created_at")

_TERMINAL_TTL = (TaskStatus.SUCCEEDED, TaskStatus.CANCELLED)
# What a transition may change (hexq.core.outcome, hexq.core.services). The rest (id, type, payload, queue, priority,
# limits, key, tenant, created_at) is written once by enqueue, so a settle never re-sends a large payload.
MUTABLE = ("status", "attempts", "run_at", "delay", "started_at", "finished_at", "worker_id", "result", "error",
           "traceback")


# -- keys -----------------------------------------------------------------------------------------
def task_key(task_id: str) -> Item:
    return {"pk": {"S": f"task#{task_id}"}, "sk": {"S": "task"}}


def idem_key(tenant: str, key: str) -> Item:
    return {"pk": {"S": f"idem#{_digest([tenant, key])}"}, "sk": {"S": "idem"}}


def schedule_key(name: str) -> Item:
    return {"pk": {"S": "schedules"}, "sk": {"S": name}}


def bucket_key(key: str) -> Item:
    return {"pk": {"S": f"bucket#{_digest(key)}"}, "sk": {"S": "bucket"}}


COUNTER_KEY: Item = {"pk": {"S": "counter"}, "sk": {"S": "counter"}}


def valid_id(task_id: str) -> bool:
    """Whether `task_id` can name a task item (ids come from URLs and bodies: any string may arrive)."""
    return 0 < utf8_len(task_id) <= MAX_ID_BYTES and task_id.isprintable()


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _digest(value: object) -> str:
    """Fixed-length keys whatever the user sent (a key attribute may not exceed 2,048 bytes)."""
    return hashlib.sha256(json.dumps(value).encode()).hexdigest()


# -- values ---------------------------------------------------------------------------------------
def num(value: float) -> Value:
    if isinstance(value, bool):
        raise TypeError("a boolean is not a number here")
    if isinstance(value, int):
        return {"N": str(value)}
    # repr is the shortest text that round-trips a double; "f" spells it without an exponent.
    return {"N": format(Decimal(repr(float(value))), "f")}


def opt_num(value: float | None) -> Value:
    return {"NULL": True} if value is None else num(value)


def opt_str(value: str | None) -> Value:
    return {"NULL": True} if value is None else {"S": value}


def _json(value: Any) -> Value:
    """Raw UTF-8, not \\u escapes: an escape takes 6-12 bytes of the 400 KB item for a 2-4 byte character.
    Text with an unpaired surrogate cannot be UTF-8, so it alone keeps the escaped (ASCII) form."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(value, separators=(",", ":"))
    return {"S": text}


def _float(item: Item, name: str) -> float | None:
    value = item.get(name, {"NULL": True})
    return None if "NULL" in value else float(value["N"])


def _str(item: Item, name: str) -> str | None:
    value = item.get(name, {"NULL": True})
    return None if "NULL" in value else str(value["S"])


def number(item: Item, name: str) -> float:
    return float(item[name]["N"])


# -- tasks ----------------------------------------------------------------------------------------
def task_fields(task: Task) -> Item:
    """Every Task field as an attribute (None as NULL), but `history` only when there is one; no key or index
    attributes."""
    return {
        "id": {"S": task.id}, "type": {"S": task.type}, "payload": _json(dict(task.payload)),
        "queue": {"S": task.queue}, "priority": num(int(task.priority)), "status": {"S": task.status.value},
        "attempts": num(task.attempts), "max_attempts": num(task.max_attempts), "timeout": num(task.timeout),
        "run_at": num(task.run_at), "delay": num(task.delay), "created_at": num(task.created_at),
        "started_at": opt_num(task.started_at),
        "finished_at": opt_num(task.finished_at), "worker_id": opt_str(task.worker_id), "result": _json(task.result),
        "error": opt_str(task.error), "traceback": opt_str(task.traceback),
        "idempotency_key": opt_str(task.idempotency_key), "tenant": {"S": task.tenant},
    } | ({"history": _json(history_to_list(task.history))} if task.history else {})  # most tasks have none


def decode_task(item: Item) -> Task:
    return Task(
        id=item["id"]["S"], type=item["type"]["S"], payload=json.loads(item["payload"]["S"]),
        queue=item["queue"]["S"], priority=Priority(int(item["priority"]["N"])),
        status=TaskStatus(item["status"]["S"]), attempts=int(item["attempts"]["N"]),
        max_attempts=int(item["max_attempts"]["N"]), timeout=number(item, "timeout"), run_at=number(item, "run_at"),
        delay=_float(item, "delay") or 0.0,  # items stored before delay existed have none
        created_at=number(item, "created_at"), started_at=_float(item, "started_at"),
        finished_at=_float(item, "finished_at"), worker_id=_str(item, "worker_id"),
        result=json.loads(item["result"]["S"]), error=_str(item, "error"), traceback=_str(item, "traceback"),
        idempotency_key=_str(item, "idempotency_key"), tenant=item["tenant"]["S"],
        history=history_from_list(json.loads(item["history"]["S"])) if "history" in item else (),
    )


def cancel_requested(item: Item) -> bool:
    """Whether a running task's item carries a cancellation request (Table.request_cancel)."""
    return bool(item.get("cancel_requested", {}).get("BOOL", False))


def due(task: Task, sent_at: float) -> float | None:
    """The by-due sort key of a task in its status (a running task's is its lease expiry, set apart)."""
    if task.status is TaskStatus.SCHEDULED:
        return task.run_at
    if task.status is TaskStatus.QUEUED:
        return sent_at
    if task.status in _TERMINAL_TTL:
        return task.finished_at
    return None


def expires_at(task: Task, ttl: float) -> float | None:
    """When DynamoDB's TTL may delete a finished task (ttl 0: never; purge_finished does it)."""
    if ttl > 0 and task.status in _TERMINAL_TTL and task.finished_at is not None:
        return int(task.finished_at + ttl)
    return None


def new_task_item(task: Task, seq: int, now: float, ttl: float) -> Item:
    item = task_key(task.id) | task_fields(task) | {"seq": num(seq)}
    for name, value in (("due", due(task, now)), ("expires_at", expires_at(task, ttl))):
        if value is not None:
            item[name] = num(value)
    return item


def item_size(item: Mapping[str, Value]) -> int:
    """An upper bound of DynamoDB's size of `item`: names and values in UTF-8, numbers at their 21-byte most."""
    return sum(utf8_len(name) + _value_size(value) for name, value in item.items())


def _value_size(value: Value) -> int:
    if "S" in value:
        return utf8_len(str(value["S"]))
    return 21 if "N" in value else 1


# -- schedules ------------------------------------------------------------------------------------
def schedule_item(schedule: Schedule) -> Item:
    return schedule_key(schedule.name) | {
        "name": {"S": schedule.name}, "spec": {"S": schedule.spec}, "type": {"S": schedule.type},
        "payload": _json(dict(schedule.payload)), "queue": {"S": schedule.queue},
        "priority": num(int(schedule.priority)), "next_run": num(schedule.next_run),
        "last_run": opt_num(schedule.last_run), "enabled": {"BOOL": schedule.enabled}, "tenant": {"S": schedule.tenant},
    }


def decode_schedule(item: Item) -> Schedule:
    return Schedule(
        name=item["name"]["S"], spec=item["spec"]["S"], type=item["type"]["S"],
        payload=json.loads(item["payload"]["S"]), queue=item["queue"]["S"],
        priority=Priority(int(item["priority"]["N"])), next_run=number(item, "next_run"),
        last_run=_float(item, "last_run"), enabled=bool(item["enabled"]["BOOL"]), tenant=item["tenant"]["S"],
    )


# -- update expressions ---------------------------------------------------------------------------
def update(sets: Mapping[str, Value], removes: Iterable[str] = (), *, condition: str = "",
           values: Mapping[str, Value] | None = None, names: Iterable[str] = ()) -> dict[str, Any]:
    """UpdateItem arguments: SET each of `sets`, REMOVE each of `removes`, under `condition`.

    Attributes are spelled `#name` everywhere (status, type and timeout are reserved words); a set
    value is `:name`; the condition brings its own `values` (`:c_...`) and the extra `names` it uses.
    """
    removes = list(removes)
    expression = "SET " + ", ".join(f"#{name} = :{name}" for name in sets)
    if removes:
        expression += " REMOVE " + ", ".join(f"#{name}" for name in removes)
    args: dict[str, Any] = {
        "UpdateExpression": expression,
        "ExpressionAttributeNames": {f"#{n}": n for n in [*sets, *removes, *names]},
        "ExpressionAttributeValues": {f":{name}": value for name, value in sets.items()} | dict(values or {}),
    }
    if condition:
        args["ConditionExpression"] = condition
    return args

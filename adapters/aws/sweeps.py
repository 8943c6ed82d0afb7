"""The poller's sweeps over the `by-due` index: due tasks, lost messages, expired leases, old results.

The index is read eventually consistent and holds keys only; each task found is then changed with a
conditional write that re-checks what the index said, so a stale index entry or a concurrent sweep
changes nothing twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from hexq.adapters.aws import items
from hexq.adapters.aws.errors import condition_failed
from hexq.adapters.aws.items import Item, num
from hexq.adapters.aws.table import Table
from hexq.core.model import Lease, Task, TaskStatus

_FINISHED = (TaskStatus.SUCCEEDED, TaskStatus.CANCELLED)


def due_keys(table: Table, status: TaskStatus, until: float, limit: int, *, inclusive: bool = True) -> list[Item]:
    """Keys of up to `limit` tasks in `status` with `due` at most `until` (before it unless inclusive), oldest first."""
    found: list[Item] = []
    start: Item | None = None
    while len(found) < limit:
        page: dict[str, Any] = {"ExclusiveStartKey": start} if start else {}
        answer = table.call("query", IndexName=items.BY_DUE, Limit=limit - len(found),
                            KeyConditionExpression=f"#status = :s AND #due {'<=' if inclusive else '<'} :t",
                            ExpressionAttributeNames={"#status": "status", "#due": "due"},
                            ExpressionAttributeValues={":s": {"S": status.value}, ":t": num(until)}, **page)
        found += [{"pk": key["pk"], "sk": key["sk"]} for key in answer.get("Items", [])]
        start = answer.get("LastEvaluatedKey")
        if not start:
            break
    return found[:limit]


def _moved(table: Table, keys: list[Item], sets: Item, condition: str, values: Item) -> Iterator[Task]:
    """Apply one conditional update to each key; yield the tasks it changed, as they are now."""
    for item in _moved_items(table, keys, sets, condition, values):
        yield items.decode_task(item)


def _moved_items(table: Table, keys: list[Item], sets: Item, condition: str, values: Item) -> Iterator[Item]:
    """_moved, yielding the items themselves (with the attributes a Task does not have)."""
    for key in keys:
        args = items.update(sets, condition=condition, values=values, names=["status"])
        try:
            answer = table.call("update_item", Key=key, ReturnValues="ALL_NEW", **args)
        except ClientError as exc:
            if not condition_failed(exc):
                raise
            continue
        yield answer["Attributes"]


def promote(table: Table, now: float, limit: int) -> list[Task]:
    """scheduled -> queued for tasks due by `now`; the caller sends their messages."""
    keys = due_keys(table, TaskStatus.SCHEDULED, now, limit)
    sets = {"status": {"S": TaskStatus.QUEUED.value}, "due": num(now)}
    return list(_moved(table, keys, sets, "#status = :c_scheduled AND #due <= :c_now",
                       {":c_scheduled": {"S": TaskStatus.SCHEDULED.value}, ":c_now": num(now)}))


def unsent(table: Table, now: float, resend_after: float, limit: int) -> list[Task]:
    """Queued tasks whose message went out more than `resend_after` ago (or never): their `due` moves to
    now, and the caller sends a message again. A duplicate is harmless: claims are conditional."""
    cutoff = now - resend_after
    keys = due_keys(table, TaskStatus.QUEUED, cutoff, limit)
    return list(_moved(table, keys, {"due": num(now)}, "#status = :c_queued AND #due <= :c_cutoff",
                       {":c_queued": {"S": TaskStatus.QUEUED.value}, ":c_cutoff": num(cutoff)}))


def reclaim(table: Table, now: float, limit: int, lease_seconds: float) -> list[Lease]:
    """Running tasks whose lease expired by `now` get a fresh token and lease; the old token is fenced out."""
    keys = due_keys(table, TaskStatus.RUNNING, now, limit)
    tokens = iter(table.reserve("token", len(keys)))
    expires = now + lease_seconds
    leases: list[Lease] = []
    for key in keys:
        token = next(tokens)
        sets = {"token": num(token), "lease_expires": num(expires), "due": num(expires)}
        for item in _moved_items(table, [key], sets, "#status = :c_running AND #due <= :c_now",
                                 {":c_running": {"S": TaskStatus.RUNNING.value}, ":c_now": num(now)}):
            leases.append(Lease(items.decode_task(item), token, expires, items.cancel_requested(item)))
    return leases


def purge(table: Table, cutoff: float, limit: int) -> int:
    """Delete succeeded and cancelled tasks finished before `cutoff`, with their idempotency items."""
    purged = 0
    for status in _FINISHED:
        for key in due_keys(table, status, cutoff, limit - purged, inclusive=False):
            try:
                old = table.call("delete_item", Key=key, ReturnValues="ALL_OLD",
                                 ConditionExpression="#status = :s AND #due < :t",
                                 ExpressionAttributeNames={"#status": "status", "#due": "due"},
                                 ExpressionAttributeValues={":s": {"S": status.value}, ":t": num(cutoff)})
            except ClientError as exc:
                if not condition_failed(exc):
                    raise
                continue
            purged += 1
            _forget_key(table, items.decode_task(old["Attributes"]))
    return purged


def _forget_key(table: Table, task: Task) -> None:
    if task.idempotency_key is None:
        return
    try:  # only if the key still names this task
        table.call("delete_item", Key=items.idem_key(task.tenant, task.idempotency_key),
                   ConditionExpression="#t = :t", ExpressionAttributeNames={"#t": "task_id"},
                   ExpressionAttributeValues={":t": {"S": task.id}})
    except ClientError as exc:
        if not condition_failed(exc):
            raise

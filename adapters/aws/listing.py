"""Listings and counts over the `by-status` index (status, seq), each read bounded.

A listing without a status filter merges the seven status partitions newest first. The other
filters (type, queue, tenant, priority, the created_at window) are projected into the index and applied as a
FilterExpression; the page's tasks are then read from the table itself (BatchGetItem, consistent). Every partition read
examines at most QUERY_SCAN index entries per call: when that bound cuts a page short, the page
comes back short with a cursor below the last entry examined, so following cursors still sees every
match exactly once (as the Redis backend does).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from hexq.adapters.aws import items
from hexq.adapters.aws.items import Item, num
from hexq.adapters.aws.table import Table
from hexq.core import search
from hexq.core.model import STATES, Page, Priority, Stats, Task, TaskQuery, TaskStatus

QUERY_SCAN = 2_000  # index entries one listing examines per status partition
STATS_SCAN = 100_000  # index entries counted per status; past it a count is a lower bound
OLDEST_SCAN = 32  # queued tasks at the head of each level whose age stats reads
_MAX_CURSOR_DIGITS = 18
_BATCH_GET = 100


@dataclass
class _Partition:
    matches: list[tuple[int, Item]] = field(default_factory=list)  # (seq, key), newest first
    floor: int | None = None  # set when the scan bound stopped the read: entries down to here were examined
    scanned: int = 0  # index entries examined
    tasks: dict[str, Task] = field(default_factory=dict)  # pk -> task, read already (by a search)


def query(table: Table, q: TaskQuery) -> Page:
    limit = max(q.limit, 0)
    if limit == 0:
        return Page([])
    before = parse_cursor(q.cursor)
    statuses = [q.status] if q.status else list(TaskStatus)
    # A search reads every entry it examines from the table: its bound is max_scan, shared by the partitions.
    bound = max(q.max_scan // len(statuses), 1) if q.search else QUERY_SCAN
    parts = [_scan(table, status, q, before, limit + 1, bound) for status in statuses]
    floors = [p.floor for p in parts if p.floor is not None]
    known = max(floors) if floors else None  # every partition was read down to here
    merged = _unique(sorted((m for p in parts for m in p.matches if known is None or m[0] >= known),
                            key=lambda m: -m[0]))
    page = merged[:limit]
    if len(merged) > limit:
        cursor: str | None = str(page[-1][0])
    else:
        cursor = None if known is None else str(known)
    read = {pk: task for p in parts for pk, task in p.tasks.items()}
    missing = [key for _, key in page if key["pk"]["S"] not in read]
    read |= {_pk(task): task for task in _hydrate(table, missing)} if missing else {}
    tasks = [read[key["pk"]["S"]] for _, key in page if key["pk"]["S"] in read]
    return Page([t for t in tasks if (q.status is None or t.status is q.status) and search.in_window(t, q)], cursor,
                sum(p.scanned for p in parts))


def _scan(table: Table, status: TaskStatus, q: TaskQuery, before: int | None, wanted: int, bound: int) -> _Partition:
    names, values = {"#status": "status"}, {":s": {"S": status.value}}
    condition = "#status = :s"
    if before is not None:
        condition += " AND #seq < :before"
        names["#seq"], values[":before"] = "seq", num(before)
    filters = _filters(q, names, values)
    extra: dict[str, Any] = {"FilterExpression": " AND ".join(filters)} if filters else {}
    part, start = _Partition(), None
    while len(part.matches) < wanted and part.scanned < bound:
        page = max(wanted - len(part.matches), 100 if filters or q.search else 0)
        answer = table.call("query", IndexName=items.BY_STATUS, ScanIndexForward=False,
                            KeyConditionExpression=condition, Limit=min(page, bound - part.scanned),
                            ExpressionAttributeNames=names, ExpressionAttributeValues=values, **extra,
                            **({"ExclusiveStartKey": start} if start else {}))
        part.scanned += int(answer.get("ScannedCount", 0))
        found = [(int(entry["seq"]["N"]), {"pk": entry["pk"], "sk": entry["sk"]}) for entry in answer.get("Items", [])]
        part.matches += _searched(table, found, q.search, part.tasks) if q.search else found
        start = answer.get("LastEvaluatedKey")
        if not start:
            return part
    if len(part.matches) < wanted and start:
        part.floor = int(start["seq"]["N"])
    return part


def _filters(q: TaskQuery, names: dict[str, str], values: dict[str, Any]) -> list[str]:
    """The FilterExpression terms of the query's filters, their names and values added to `names` and `values`.
    created_at is projected into by-status from this version on; an index entry without it (a table made
    before) passes the window here, and query() checks the task read from the table."""
    filters = []
    for name in ("type", "queue", "tenant"):
        if (value := getattr(q, name)) is not None:
            filters.append(f"#{name} = :{name}")
            names[f"#{name}"], values[f":{name}"] = name, {"S": value}
    if q.priority is not None:
        filters.append("#priority = :priority")
        names["#priority"], values[":priority"] = "priority", num(int(q.priority))
    for bound, test in (("created_after", ">="), ("created_before", "<")):
        if (at := getattr(q, bound)) is not None:
            filters.append(f"(attribute_not_exists(#created) OR #created {test} :{bound})")
            names["#created"], values[f":{bound}"] = "created_at", num(at)
    return filters


def _searched(table: Table, found: list[tuple[int, Item]], text: str, read: dict[str, Task]) -> list[tuple[int, Item]]:
    """The entries of `found` whose task matches the search, read from the table (the index holds no payload);
    the tasks kept go into `read`."""
    tasks = {_pk(task): task for task in _hydrate(table, [key for _, key in found]) if search.matches(task, text)}
    read |= tasks
    return [(seq, key) for seq, key in found if key["pk"]["S"] in tasks]


def _pk(task: Task) -> str:
    return str(items.task_key(task.id)["pk"]["S"])


def _unique(matches: list[tuple[int, Item]]) -> list[tuple[int, Item]]:
    """A task that changed status between two partition reads shows up twice: keep it once."""
    seen: set[str] = set()
    unique = []
    for seq, key in matches:
        if key["pk"]["S"] not in seen:
            seen.add(key["pk"]["S"])
            unique.append((seq, key))
    return unique


def _hydrate(table: Table, keys: list[Item]) -> list[Task]:
    """The tasks of `keys`, in that order, read consistently; tasks deleted meanwhile are left out."""
    found: dict[str, Item] = {}
    for start in range(0, len(keys), _BATCH_GET):
        pending: dict[str, Any] = {table.name: {"Keys": keys[start:start + _BATCH_GET], "ConsistentRead": True}}
        while pending:
            answer = table.db.batch_get_item(RequestItems=pending)
            found |= {item["pk"]["S"]: item for item in answer.get("Responses", {}).get(table.name, [])}
            pending = answer.get("UnprocessedKeys") or {}
    return [items.decode_task(found[key["pk"]["S"]]) for key in keys if key["pk"]["S"] in found]


def stats(table: Table, now: float) -> Stats:
    """Succeeded, failed and cancelled are counted (Select=COUNT); the states in STATES are read off the index
    with their queue and priority (the same read capacity: a Query is charged by what it examines). The oldest
    age reads created_at and run_at of the first OLDEST_SCAN queued tasks of each level by seq (BatchGetItem,
    eventually consistent): their oldest is the level's unless a task that waited longer sits behind them."""
    by_status: dict[TaskStatus, int] = {s: _count(table, s) for s in TaskStatus if s.value not in STATES}
    depth: dict[tuple[str, Priority, str], int] = {}
    heads: dict[tuple[str, Priority], list[Item]] = {}
    names = {"#status": "status", "#queue": "queue", "#priority": "priority", "#pk": "pk", "#sk": "sk"}
    for state in STATES:
        entries = _entries(table, TaskStatus(state), ProjectionExpression="#pk, #sk, #queue, #priority",
                           ExpressionAttributeNames=names)
        for entry in entries:
            level = (entry["queue"]["S"], Priority(int(entry["priority"]["N"])))
            depth[(*level, state)] = depth.get((*level, state), 0) + 1
            if state == TaskStatus.QUEUED and len(head := heads.setdefault(level, [])) < OLDEST_SCAN:
                head.append({"pk": entry["pk"], "sk": entry["sk"]})
        by_status[TaskStatus(state)] = len(entries)
    queued: dict[str, dict[Priority, int]] = {}
    for (queue, priority, state), count in depth.items():
        if state == TaskStatus.QUEUED:
            queued.setdefault(queue, {p: 0 for p in Priority})[priority] = count
    eligible = _eligible(table, [key for keys in heads.values() for key in keys])
    oldest = {level: now - min(eligible[k["pk"]["S"]] for k in keys if k["pk"]["S"] in eligible)
              for level, keys in heads.items() if any(k["pk"]["S"] in eligible for k in keys)}
    return Stats(by_status, queued, depth, oldest)


def _eligible(table: Table, keys: list[Item]) -> dict[str, float]:
    """pk -> max(created_at, run_at) of the tasks of `keys` (those deleted meanwhile are left out)."""
    found: dict[str, float] = {}
    for start in range(0, len(keys), _BATCH_GET):
        pending: dict[str, Any] = {table.name: {
            "Keys": keys[start:start + _BATCH_GET], "ProjectionExpression": "#pk, #created, #run",
            "ExpressionAttributeNames": {"#pk": "pk", "#created": "created_at", "#run": "run_at"}}}
        while pending:
            answer = table.db.batch_get_item(RequestItems=pending)
            for item in answer.get("Responses", {}).get(table.name, []):
                found[item["pk"]["S"]] = max(items.number(item, "created_at"), items.number(item, "run_at"))
            pending = answer.get("UnprocessedKeys") or {}
    return found


def backlog(table: Table, paused: Collection[str] = ()) -> int:
    """Queued tasks outside the `paused` queues (a filter on the index's projected queue: the same reads)."""
    return _count(table, TaskStatus.QUEUED, exclude_queues=sorted(paused))


def count_waiting(table: Table, tenant: str) -> int:
    """A tenant's queued and scheduled tasks: two index reads filtered on tenant (each bounded by STATS_SCAN)."""
    return sum(_count(table, status, tenant) for status in (TaskStatus.QUEUED, TaskStatus.SCHEDULED))


def _count(table: Table, status: TaskStatus, tenant: str | None = None, exclude_queues: Sequence[str] = ()) -> int:
    names, values = {"#status": "status"}, {":s": {"S": status.value}}
    where: dict[str, Any] = {}
    filters: list[str] = []
    if tenant is not None:
        names["#tenant"] = "tenant"
        values[":tenant"] = {"S": tenant}
        filters.append("#tenant = :tenant")
    if exclude_queues:
        names["#queue"] = "queue"
        values |= {f":x{i}": {"S": queue} for i, queue in enumerate(exclude_queues)}
        filters += [f"NOT #queue IN ({', '.join(f':x{j}' for j in range(i, min(i + 100, len(exclude_queues))))})"
                    for i in range(0, len(exclude_queues), 100)]  # at most 100 values in one IN
    if filters:
        where["FilterExpression"] = " AND ".join(filters)
    total, start = 0, None
    while total < STATS_SCAN:
        answer = table.call("query", IndexName=items.BY_STATUS, Select="COUNT", KeyConditionExpression="#status = :s",
                            ExpressionAttributeNames=names, ExpressionAttributeValues=values, **where,
                            **({"ExclusiveStartKey": start} if start else {}))
        total += int(answer.get("Count", 0))
        start = answer.get("LastEvaluatedKey")
        if not start:
            break
    return total


def _entries(table: Table, status: TaskStatus, **projection: Any) -> list[Item]:
    entries: list[Item] = []
    start = None
    while len(entries) < STATS_SCAN:
        answer = table.call("query", IndexName=items.BY_STATUS, KeyConditionExpression="#status = :s",
                            ExpressionAttributeValues={":s": {"S": status.value}}, **projection,
                            **({"ExclusiveStartKey": start} if start else {}))
        entries += answer.get("Items", [])
        start = answer.get("LastEvaluatedKey")
        if not start:
            break
    return entries


def parse_cursor(cursor: str | None) -> int | None:
    """The seq a page continues below. Cursors come from clients: anything else starts from the newest."""
    if cursor and cursor.isascii() and cursor.isdigit() and len(cursor) <= _MAX_CURSOR_DIGITS:
        return int(cursor)
    return None

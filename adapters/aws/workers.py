"""The WorkerRegistry on DynamoDB: one item per worker in the `workers` partition, listed by id.

A beat is one UpdateItem conditioned on the worker being alive (it keeps started_at); the first beat, or one
after the worker expired, is a PutItem that starts it now. `alive_until` (this process's clock, as every AWS
time) decides who is listed; `expires_at`, the table's TTL attribute, lets DynamoDB delete the item some time
after, so a worker that died without leaving costs nothing for long.
"""

from __future__ import annotations

import math
from typing import Any

from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from hexq.adapters.aws import items
from hexq.adapters.aws.errors import condition_failed
from hexq.adapters.aws.items import Item, num
from hexq.adapters.aws.table import Table
from hexq.core.model import WorkerInfo

PARTITION = "workers"


def key(worker_id: str) -> Item:
    return {"pk": {"S": PARTITION}, "sk": {"S": worker_id}}


def beat(table: Table, worker: WorkerInfo, ttl: float, now: float) -> None:
    fields = {"host": {"S": worker.host}, "pid": num(worker.pid), "queues": {"L": [{"S": q} for q in worker.queues]},
              "running": num(worker.running), "last_seen": num(now), "alive_until": num(now + ttl),
              "expires_at": num(math.ceil(now + ttl))}
    names = {f"#{name}": name for name in fields}
    values: dict[str, Any] = {f":{name}": value for name, value in fields.items()} | {":now": num(now)}
    try:
        table.call("update_item", Key=key(worker.id), ConditionExpression="#alive_until > :now",
                   UpdateExpression="SET " + ", ".join(f"#{name} = :{name}" for name in fields),
                   ExpressionAttributeNames=names, ExpressionAttributeValues=values)
    except ClientError as exc:
        if not condition_failed(exc):
            raise
        table.call("put_item", Item=key(worker.id) | fields | {"started_at": num(now)})


def leave(table: Table, worker_id: str) -> None:
    table.call("delete_item", Key=key(worker_id))


def workers(table: Table, now: float) -> list[WorkerInfo]:
    """A consistent Query of the partition: one read unit per 4 KB of worker items (a few hundred bytes each)."""
    found: list[WorkerInfo] = []
    start = None
    while True:
        answer = table.call("query", KeyConditionExpression="pk = :pk", ConsistentRead=True,
                            ExpressionAttributeValues={":pk": {"S": PARTITION}},
                            **({"ExclusiveStartKey": start} if start else {}))
        found += [_decode(item) for item in answer.get("Items", []) if items.number(item, "alive_until") > now]
        start = answer.get("LastEvaluatedKey")
        if not start:
            return sorted(found, key=lambda w: w.id)


def _decode(item: Item) -> WorkerInfo:
    return WorkerInfo(item["sk"]["S"], item["host"]["S"], int(item["pid"]["N"]),
                      tuple(q["S"] for q in item["queues"]["L"]), items.number(item, "started_at"),
                      items.number(item, "last_seen"), int(item["running"]["N"]))

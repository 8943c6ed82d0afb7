"""Schedules (one partition, listed by name) and rate-limit token buckets: blocking DynamoDB operations."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from hexq.adapters.aws import items
from hexq.adapters.aws.errors import condition_failed
from hexq.adapters.aws.items import num
from hexq.adapters.aws.table import Table
from hexq.core.errors import BackendUnavailable
from hexq.core.ports import Clock
from hexq.core.ratelimit import Bucket, check, take
from hexq.core.schedule import Schedule

_BUCKET_TRIES = 8


def put(table: Table, schedule: Schedule) -> None:
    table.call("put_item", Item=items.schedule_item(schedule))


def get(table: Table, name: str) -> Schedule | None:
    found = table.call("get_item", Key=items.schedule_key(name), ConsistentRead=True).get("Item")
    return None if found is None else items.decode_schedule(found)


def delete(table: Table, name: str) -> bool:
    return "Attributes" in table.call("delete_item", Key=items.schedule_key(name), ReturnValues="ALL_OLD")


def all_schedules(table: Table) -> list[Schedule]:
    found: list[Schedule] = []
    start = None
    while True:
        answer = table.call("query", KeyConditionExpression="pk = :pk", ConsistentRead=True,
                            ExpressionAttributeValues={":pk": {"S": "schedules"}},
                            **({"ExclusiveStartKey": start} if start else {}))
        found += [items.decode_schedule(item) for item in answer.get("Items", [])]
        start = answer.get("LastEvaluatedKey")
        if not start:
            return found  # the sort key is the name: already in name order


def advance(table: Table, name: str, expected_next: float, next_run: float) -> bool:
    """next_run `expected_next` -> `next_run` (and last_run = `expected_next`), only if it still is."""
    try:
        table.call("update_item", Key=items.schedule_key(name), UpdateExpression="SET #n = :n, #l = :e",
                   ConditionExpression="#n = :e", ExpressionAttributeNames={"#n": "next_run", "#l": "last_run"},
                   ExpressionAttributeValues={":n": num(next_run), ":e": num(expected_next)})
    except ClientError as exc:
        if condition_failed(exc):
            return False  # another poller fired it, or the schedule is gone
        raise
    return True


def acquire(table: Table, clock: Clock, key: str, rate: float, burst: int) -> float:
    """Take a token from bucket `key`: read, compute with hexq.core.ratelimit.take, write back only if the
    bucket is still what was read (a compare-and-set on tokens and updated). A lost race reads again."""
    check(rate, burst)
    bucket_key = items.bucket_key(key)
    for _ in range(_BUCKET_TRIES):
        found = table.call("get_item", Key=bucket_key, ConsistentRead=True).get("Item")
        bucket = None if found is None else Bucket(items.number(found, "tokens"), items.number(found, "updated"))
        taken, wait = take(bucket, clock.now(), rate, burst)
        if wait > 0:
            return wait  # nothing taken: the stored bucket refills to the same state without a write
        if _store_bucket(table, bucket_key, bucket, taken):
            return 0.0
    raise BackendUnavailable("aws", f"rate bucket {key!r} is too contended to update")


def _store_bucket(table: Table, key: items.Item, before: Bucket | None, after: Bucket) -> bool:
    item = key | {"tokens": num(after.tokens), "updated": num(after.updated)}
    condition: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(pk)"}
    if before is not None:
        condition = {"ConditionExpression": "#t = :t AND #u = :u",
                     "ExpressionAttributeNames": {"#t": "tokens", "#u": "updated"},
                     "ExpressionAttributeValues": {":t": num(before.tokens), ":u": num(before.updated)}}
    try:
        table.call("put_item", Item=item, **condition)
    except ClientError as exc:
        if condition_failed(exc):
            return False
        raise
    return True

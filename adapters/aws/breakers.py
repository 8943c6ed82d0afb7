"""BreakerStore on DynamoDB: one item per breaker in partition `breakers` (sort key: its name), written by a
conditional PutItem on its version: `attribute_not_exists(pk)` for the first write, `version = :v` after."""

from __future__ import annotations

from dataclasses import replace

from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from hexq.adapters.aws.errors import condition_failed
from hexq.adapters.aws.items import num
from hexq.adapters.aws.table import Table
from hexq.core.breaker import BreakerState
from hexq.core.ports import Clock

PARTITION = "breakers"


def states(table: Table, clock: Clock) -> tuple[float, list[BreakerState]]:
    found: list[BreakerState] = []
    start = None
    while True:
        answer = table.call("query", KeyConditionExpression="pk = :pk", ConsistentRead=True,
                            ExpressionAttributeValues={":pk": {"S": PARTITION}},
                            **({"ExclusiveStartKey": start} if start else {}))
        found += [BreakerState.from_json(item["sk"]["S"], item["state"]["S"], int(item["version"]["N"]))
                  for item in answer.get("Items", [])]
        start = answer.get("LastEvaluatedKey")
        if not start:
            # DynamoDB has no server time: the process's clock, as every other AWS time (AwsBackend.now).
            return clock.now(), found  # the sort key is the name: already in name order


def put(table: Table, state: BreakerState) -> BreakerState | None:
    new = replace(state, version=state.version + 1)
    item = {"pk": {"S": PARTITION}, "sk": {"S": state.name}, "version": num(new.version),
            "state": {"S": new.to_json()}}
    condition: dict[str, object] = {"ConditionExpression": "attribute_not_exists(pk)"} if state.version == 0 else {
        "ConditionExpression": "#v = :v", "ExpressionAttributeNames": {"#v": "version"},
        "ExpressionAttributeValues": {":v": num(state.version)}}
    try:
        table.call("put_item", Item=item, **condition)
    except ClientError as exc:
        if condition_failed(exc):
            return None  # another writer got there first
        raise
    return new

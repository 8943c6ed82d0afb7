"""create_resources: the table and queues of one prefix, for tests and local emulators.

In production template.yaml creates them (keep the two in step: key schema, indexes, TTL, queues and
the redrive policy). Idempotent: what exists already is left as it is.
"""

from __future__ import annotations

import json

from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from hexq.adapters.aws import items
from hexq.adapters.aws.config import AwsConfig, Clients
from hexq.adapters.aws.errors import code
from hexq.adapters.aws.queues import LEVELS

MAX_RECEIVE_COUNT = 5  # as template.yaml: a message received this often goes to the dead-letter queue
_RETENTION = str(14 * 86_400)


def _index(name: str, sort_key: str, projection: dict[str, object]) -> dict[str, object]:
    return {"IndexName": name, "Projection": projection,
            "KeySchema": [{"AttributeName": "status", "KeyType": "HASH"},
                          {"AttributeName": sort_key, "KeyType": "RANGE"}]}


TABLE_SCHEMA: dict[str, object] = {
    "BillingMode": "PAY_PER_REQUEST",
    "AttributeDefinitions": [{"AttributeName": name, "AttributeType": kind}
                             for name, kind in (("pk", "S"), ("sk", "S"), ("status", "S"), ("seq", "N"), ("due", "N"))],
    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
    "GlobalSecondaryIndexes": [
        _index(items.BY_STATUS, "seq", {"ProjectionType": "INCLUDE", "NonKeyAttributes": list(items.INDEX_ATTRIBUTES)}),
        _index(items.BY_DUE, "due", {"ProjectionType": "KEYS_ONLY"}),
    ],
}


def create_resources(config: AwsConfig, clients: Clients) -> None:
    """Create `<prefix>-tasks` (with TTL on expires_at), `<prefix>-dlq` and the four priority queues."""
    db = clients.get("dynamodb")
    try:
        db.create_table(TableName=config.table, **TABLE_SCHEMA)
        db.get_waiter("table_exists").wait(TableName=config.table, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        db.update_time_to_live(TableName=config.table,
                               TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"})
    except ClientError as exc:
        if code(exc) != "ResourceInUseException":
            raise
    sqs = clients.get("sqs")
    dlq = sqs.create_queue(QueueName=config.dead_letter_queue, Attributes={"MessageRetentionPeriod": _RETENTION})
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq["QueueUrl"], AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVE_COUNT)})
    for level in LEVELS:
        sqs.create_queue(QueueName=config.queue(level), Attributes={
            "VisibilityTimeout": "1800", "MessageRetentionPeriod": _RETENTION, "RedrivePolicy": redrive})

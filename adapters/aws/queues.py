"""Blocking SQS operations: one standard queue per priority level, messages that only name a task.

A message body is `{"task_id": "..."}` (what hexq.functions.lambda_worker reads from SQS events) with the
task's hexq queue as the message attribute `queue`, so a claimer can hand back a message for a queue
it does not serve without reading the table. Sends and deletes that fail are reported or logged,
never raised: DynamoDB holds the truth, and the sweeps repair what SQS missed.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

from hexq.adapters.aws.config import AwsConfig, Clients
from hexq.adapters.aws.items import valid_id
from hexq.core.model import Priority, Task

log = logging.getLogger("hexq.aws")

RECEIVE_VISIBILITY = 30  # seconds a received message stays hidden while its claimer claims or hands it back
LEVELS = sorted(Priority, reverse=True)  # critical first
_BATCH = 10  # SQS's most entries per batch call and messages per receive


@dataclass(frozen=True, slots=True)
class Message:
    level: Priority
    receipt: str
    task_id: str | None  # None: the body is not a task reference
    queue: str | None  # the hexq queue, when the sender said


class Queues:
    def __init__(self, clients: Clients, config: AwsConfig) -> None:
        self._clients = clients
        self._config = config
        self._urls: dict[Priority, str] = {}
        self._lock = threading.Lock()

    @property
    def sqs(self) -> Any:
        return self._clients.get("sqs")

    def url(self, level: Priority) -> str:
        with self._lock:
            known = self._urls.get(level)
        if known is None:
            known = str(self.sqs.get_queue_url(QueueName=self._config.queue(level))["QueueUrl"])
            with self._lock:
                self._urls[level] = known
        return known

    def send(self, tasks: Sequence[Task]) -> list[str]:
        """One message per task on its priority's queue. Returns the ids whose message was not sent."""
        failed: list[str] = []
        for level in LEVELS:
            batch = [task for task in tasks if task.priority is level]
            for start in range(0, len(batch), _BATCH):
                failed += self._send_batch(level, batch[start:start + _BATCH])
        return failed

    def _send_batch(self, level: Priority, tasks: Sequence[Task]) -> list[str]:
        entries = [{"Id": str(i), "MessageBody": json.dumps({"task_id": task.id}),
                    "MessageAttributes": {"queue": {"DataType": "String", "StringValue": task.queue}}}
                   for i, task in enumerate(tasks)]
        try:
            answer = self.sqs.send_message_batch(QueueUrl=self.url(level), Entries=entries)
        except (ClientError, BotoCoreError) as exc:
            log.warning("sending %d task messages failed (%s); the sweep sends them again", len(tasks), exc)
            return [task.id for task in tasks]
        return [tasks[int(entry["Id"])].id for entry in answer.get("Failed", [])]

    def receive(self, level: Priority, n: int, wait: int) -> list[Message]:
        answer = self.sqs.receive_message(QueueUrl=self.url(level), MaxNumberOfMessages=max(1, min(n, _BATCH)),
                                          WaitTimeSeconds=wait, VisibilityTimeout=RECEIVE_VISIBILITY,
                                          MessageAttributeNames=["queue"])
        return [_message(level, raw) for raw in answer.get("Messages", [])]

    def delete(self, messages: Sequence[Message]) -> None:
        """Best effort: a message that stays comes back after RECEIVE_VISIBILITY and is dropped as stale."""
        self._batch(messages, "delete_message_batch", {})

    def release(self, messages: Sequence[Message]) -> None:
        """Hand messages back at once (visibility 0) for claimers of other queues; best effort as well."""
        self._batch(messages, "change_message_visibility_batch", {"VisibilityTimeout": 0})

    def _batch(self, messages: Sequence[Message], operation: str, extra: dict[str, Any]) -> None:
        for level in LEVELS:
            mine = [m for m in messages if m.level is level]
            for start in range(0, len(mine), _BATCH):
                entries = [{"Id": str(i), "ReceiptHandle": m.receipt, **extra}
                           for i, m in enumerate(mine[start:start + _BATCH])]
                try:
                    getattr(self.sqs, operation)(QueueUrl=self.url(level), Entries=entries)
                except (ClientError, BotoCoreError) as exc:
                    log.warning("%s of %d messages failed: %s", operation, len(entries), exc)


def _message(level: Priority, raw: dict[str, Any]) -> Message:
    queue = raw.get("MessageAttributes", {}).get("queue", {}).get("StringValue")
    return Message(level, raw["ReceiptHandle"], task_reference(raw.get("Body")), queue)


def task_reference(body: object) -> str | None:
    """The task id of a body `{"task_id": "..."}`; None for anything else."""
    try:
        data = json.loads(body) if isinstance(body, str) else None
    except (ValueError, RecursionError):
        return None
    task_id = data.get("task_id") if isinstance(data, dict) else None
    return task_id if isinstance(task_id, str) and valid_id(task_id) else None

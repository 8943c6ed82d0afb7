"""QueueControl on DynamoDB: one item, (control, paused), whose string set `queues` names the paused queues.

A pause is an UpdateItem ADD to the set and a resume a DELETE from it, each returning the set as it was, which
says whether it changed: atomic, so two callers cannot both see their call change it. Claims read the item
through Paused, a copy a process keeps for at most TTL seconds.
"""

from __future__ import annotations

import threading
import time

from hexq.adapters.aws.items import Item
from hexq.adapters.aws.table import Table

KEY: Item = {"pk": {"S": "control"}, "sk": {"S": "paused"}}
TTL = 1.0  # seconds a claimer trusts its copy: another process's pause or resume takes effect within it


def pause(table: Table, queue: str) -> bool:
    return queue not in _update(table, "ADD", queue)


def resume(table: Table, queue: str) -> bool:
    return queue in _update(table, "DELETE", queue)


def paused(table: Table) -> frozenset[str]:
    answer = table.call("get_item", Key=KEY, ConsistentRead=True, ProjectionExpression="#q",
                        ExpressionAttributeNames={"#q": "queues"})
    return frozenset(answer.get("Item", {}).get("queues", {}).get("SS", ()))


def _update(table: Table, action: str, queue: str) -> frozenset[str]:
    """The set before `action` (ADD or DELETE) of `queue`."""
    answer = table.call("update_item", Key=KEY, UpdateExpression=f"{action} #q :q", ReturnValues="ALL_OLD",
                        ExpressionAttributeNames={"#q": "queues"}, ExpressionAttributeValues={":q": {"SS": [queue]}})
    return frozenset(answer.get("Attributes", {}).get("queues", {}).get("SS", ()))


class Paused:
    """The paused set as one process's claims see it: read again when the copy is TTL old, and at once after
    this process paused or resumed a queue. Real (monotonic) time, as SQS's long polls: the copy's age decides
    only how soon another process's change is seen, never a task's state."""

    def __init__(self, table: Table) -> None:
        self._table = table
        self._lock = threading.Lock()
        self._copy: tuple[float, frozenset[str]] | None = None

    def get(self) -> frozenset[str]:
        with self._lock:
            copy = self._copy
        if copy is not None and time.monotonic() - copy[0] < TTL:
            return copy[1]
        read_at, fresh = time.monotonic(), paused(self._table)
        with self._lock:
            self._copy = (read_at, fresh)
        return fresh

    def forget(self) -> None:
        with self._lock:
            self._copy = None

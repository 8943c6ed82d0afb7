"""Blocking DynamoDB operations on single tasks: every state change is a conditional write (the fencing).

Run them off the event loop (AwsBackend does, with asyncio.to_thread). Failed conditions come back
as domain answers (False, None, "gone"); other botocore errors propagate to the caller's translation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

from hexq.adapters.aws import items
from hexq.adapters.aws.config import Clients
from hexq.adapters.aws.errors import cancellation_reasons, condition_failed
from hexq.adapters.aws.items import Item, num
from hexq.core.errors import BackendUnavailable, ValidationError
from hexq.core.model import Lease, Task, TaskStatus

log = logging.getLogger("hexq.aws")

Missed = Literal["gone", "elsewhere"]
"""Why a claim by message did not take the task: it is not queued any more, or it is queued in a
hexq queue the claimer does not serve."""

_TRIES = 5
_BATCH_WRITE = 25  # BatchWriteItem's most requests per call


class Table:
    """The task table. `ttl` as in AwsConfig."""

    def __init__(self, clients: Clients, name: str, ttl: float) -> None:
        self._clients = clients
        self.name = name
        self._ttl = ttl

    @property
    def db(self) -> Any:
        return self._clients.get("dynamodb")

    def call(self, operation: str, **kwargs: Any) -> Any:
        return getattr(self.db, operation)(TableName=self.name, **kwargs)

    # -- counters -------------------------------------------------------------------------------
    def reserve(self, counter: Literal["seq", "token"], count: int) -> range:
        """`count` fresh numbers of a counter (seq orders tasks, token fences leases); never reused."""
        if count <= 0:
            return range(0)
        answer = self.call("update_item", Key=items.COUNTER_KEY, UpdateExpression="ADD #n :k",
                           ExpressionAttributeNames={"#n": counter}, ExpressionAttributeValues={":k": num(count)},
                           ReturnValues="UPDATED_NEW")
        last = int(answer["Attributes"][counter]["N"])
        return range(last - count + 1, last + 1)

    # -- reads ----------------------------------------------------------------------------------
    def get(self, task_id: str) -> Task | None:
        if not items.valid_id(task_id):
            return None
        found = self.call("get_item", Key=items.task_key(task_id), ConsistentRead=True).get("Item")
        return None if found is None else items.decode_task(found)

    # -- enqueue --------------------------------------------------------------------------------
    def put_new(self, tasks: Sequence[tuple[Task, int]], now: float) -> None:
        """Store tasks without an idempotency key (fresh uuids: no condition needed), 25 per call."""
        requests = [{"PutRequest": {"Item": items.new_task_item(task, seq, now, self._ttl)}} for task, seq in tasks]
        for start in range(0, len(requests), _BATCH_WRITE):
            pending = {self.name: requests[start:start + _BATCH_WRITE]}
            for attempt in range(_TRIES + 3):
                pending = self.db.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
                if not pending:
                    break
                time.sleep(min(0.05 * 2 ** attempt, 1.0))  # throttled: what is left goes again, backing off
            if pending:
                raise BackendUnavailable("aws", f"DynamoDB kept {len(pending[self.name])} task writes unprocessed")

    def put_keyed(self, task: Task, seq: int, now: float) -> Task:
        """Store a task with its idempotency item in one transaction, or return the task the key names.

        attribute_not_exists on the key item makes concurrent submits of one key store one task.
        A key whose task is gone (purged, expired) is taken over.
        """
        assert task.idempotency_key is not None
        key = items.idem_key(task.tenant, task.idempotency_key)
        stale: str | None = None
        for attempt in range(_TRIES):
            try:
                self.db.transact_write_items(TransactItems=[self._claim_key(key, task.id, stale), {"Put": {
                    "TableName": self.name, "Item": items.new_task_item(task, seq, now, self._ttl),
                    "ConditionExpression": "attribute_not_exists(pk)"}}])
                return task
            except ClientError as exc:
                reasons = cancellation_reasons(exc)
                if reasons[:1] == ["ConditionalCheckFailed"]:
                    stale = self._owner(key)
                    existing = None if stale is None else self.get(stale)
                    if existing is not None:
                        return existing
                elif "TransactionConflict" in reasons:  # a concurrent submit of the same key: look again
                    time.sleep(0.02 * (attempt + 1))
                else:
                    raise
        raise BackendUnavailable("aws", f"idempotency key {task.idempotency_key!r} kept changing")

    def _claim_key(self, key: Item, task_id: str, stale: str | None) -> dict[str, Any]:
        put: dict[str, Any] = {"TableName": self.name, "Item": key | {"task_id": {"S": task_id}}}
        if stale is None:
            put["ConditionExpression"] = "attribute_not_exists(pk)"
        else:
            put |= {"ConditionExpression": "#t = :stale", "ExpressionAttributeNames": {"#t": "task_id"},
                    "ExpressionAttributeValues": {":stale": {"S": stale}}}
        return {"Put": put}

    def earlier(self, task: Task) -> Task | None:
        """The task `task`'s idempotency key names, if it has one and that task still exists."""
        if task.idempotency_key is None:
            return None
        owner = self._owner(items.idem_key(task.tenant, task.idempotency_key))
        return None if owner is None else self.get(owner)

    def earlier_lookup(self) -> Callable[[Task], Task | None]:
        """`earlier` that reads each (tenant, key) once: for checks that ask about one batch twice."""
        seen: dict[tuple[str, str | None], Task | None] = {}

        def lookup(task: Task) -> Task | None:
            mark = (task.tenant, task.idempotency_key)
            if mark not in seen:
                seen[mark] = self.earlier(task)
            return seen[mark]

        return lookup

    def _owner(self, key: Item) -> str | None:
        found = self.call("get_item", Key=key, ConsistentRead=True).get("Item")
        return None if found is None else str(found["task_id"]["S"])

    # -- leases ---------------------------------------------------------------------------------
    def claim(self, task_id: str, queues: Sequence[str] | None, token: int, now: float, expires: float,
              worker_id: str, *, paused: Sequence[str] = ()) -> Lease | Missed:
        """queued -> running under `token`, if the task is queued (in one of `queues`, unless None; in none of
        `paused`: a claim by id, which names no queue, leaves those alone)."""
        if not items.valid_id(task_id):
            return "gone"
        sets = {"status": {"S": TaskStatus.RUNNING.value}, "started_at": num(now), "worker_id": {"S": worker_id},
                "token": num(token), "lease_expires": num(expires), "due": num(expires)}
        condition, names = "#status = :c_queued", ["attempts"]
        values: Item = {":c_queued": {"S": TaskStatus.QUEUED.value}, ":c_one": num(1)}
        if queues is not None:
            condition += f" AND #queue IN ({', '.join(f':c_q{i}' for i in range(len(queues)))})"
            values |= {f":c_q{i}": {"S": queue} for i, queue in enumerate(queues)}
            names.append("queue")
        if paused:
            condition += f" AND NOT #queue IN ({', '.join(f':c_p{i}' for i in range(len(paused)))})"
            values |= {f":c_p{i}": {"S": queue} for i, queue in enumerate(paused)}
            if "queue" not in names:
                names.append("queue")
        args = items.update(sets, condition=condition, values=values, names=names)
        args["UpdateExpression"] += ", #attempts = #attempts + :c_one"
        try:
            answer = self.call("update_item", Key=items.task_key(task_id), ReturnValues="ALL_NEW", **args)
        except ClientError as exc:
            if not condition_failed(exc):
                raise
            current = self.get(task_id)
            return "elsewhere" if current is not None and current.status is TaskStatus.QUEUED else "gone"
        return Lease(items.decode_task(answer["Attributes"]), token, expires)

    def extend(self, lease: Lease, expires: float) -> Lease | None:
        """The renewed lease, or None where the token is stale.

        One conditional write when nobody asked to cancel the task (the common case). When the write's
        condition fails, a read of three attributes tells a stale token from a cancellation request, and
        a cancelled task's lease is renewed without the no-cancel clause (its worker is about to settle it).
        """
        key = items.task_key(lease.task.id)
        fenced = "#status = :c_running AND #token = :c_token"
        values: Item = {":c_running": {"S": TaskStatus.RUNNING.value}, ":c_token": num(lease.token)}
        sets = {"lease_expires": num(expires), "due": num(expires)}
        quiet = items.update(sets, names=["status", "token", "cancel_requested"], values=values,
                             condition=f"{fenced} AND attribute_not_exists(#cancel_requested)")
        if self._conditional("update_item", Key=key, **quiet):
            return Lease(lease.task, lease.token, expires)
        found = self.call("get_item", Key=key, ConsistentRead=True, ProjectionExpression="#s, #t, #c",
                          ExpressionAttributeNames={"#s": "status", "#t": "token", "#c": "cancel_requested"})
        item = found.get("Item", {})
        if item.get("status", {}).get("S") != TaskStatus.RUNNING.value or item.get("token", {}).get("N") != str(
                lease.token) or not items.cancel_requested(item):
            return None
        renewed = items.update(sets, names=["status", "token"], values=values, condition=fenced)
        return Lease(lease.task, lease.token, expires, True) if self._conditional("update_item", Key=key,
                                                                                  **renewed) else None

    def request_cancel(self, task_id: str) -> Task | None:
        """Mark a running task for cancellation; its worker's next heartbeat reads the mark."""
        if not items.valid_id(task_id):
            return None
        args = items.update({"cancel_requested": {"BOOL": True}}, names=["status"], condition="#status = :c_running",
                            values={":c_running": {"S": TaskStatus.RUNNING.value}})
        try:
            answer = self.call("update_item", Key=items.task_key(task_id), ReturnValues="ALL_NEW", **args)
        except ClientError as exc:
            if condition_failed(exc):
                return None
            raise
        return items.decode_task(answer["Attributes"])

    # -- writes of a whole task -----------------------------------------------------------------
    def settle(self, task: Task, token: int, now: float) -> bool:
        """Write the task's new state if `token` still holds its lease."""
        return self._write(task, now, "#status = :c_running AND #token = :c_token",
                           {":c_running": {"S": TaskStatus.RUNNING.value}, ":c_token": num(token)})

    def transition(self, task: Task, expected: TaskStatus, now: float) -> bool:
        """Compare-and-set on status; any lease ends."""
        if not items.valid_id(task.id):
            return False
        return self._write(task, now, "#status = :c_expected", {":c_expected": {"S": expected.value}})

    def _write(self, task: Task, now: float, condition: str, values: Item) -> bool:
        """Write the fields a transition changes (items.MUTABLE) and the index attributes; end any lease."""
        task = fit(task)
        fields = items.task_fields(task)
        sets, removes = {name: fields[name] for name in items.MUTABLE}, ["token", "lease_expires", "cancel_requested"]
        if task.history:  # only an attempt that did not succeed adds to it: a success writes nothing more
            sets["history"] = fields["history"]
        for name, value in (("due", items.due(task, now)), ("expires_at", items.expires_at(task, self._ttl))):
            if value is None:
                removes.append(name)
            else:
                sets[name] = num(value)
        update = {"Key": items.task_key(task.id), **items.update(sets, removes, condition=condition, values=values,
                                                                 names=["token"])}
        if "expires_at" not in sets or task.idempotency_key is None:
            return self._conditional("update_item", **update)
        return self._write_with_key(task, update, sets["expires_at"])

    def _write_with_key(self, task: Task, update: dict[str, Any], expires: items.Value) -> bool:
        """A finished task's idempotency item expires with it: both in one transaction."""
        assert task.idempotency_key is not None
        key_update = {"TableName": self.name, "Key": items.idem_key(task.tenant, task.idempotency_key),
                      "UpdateExpression": "SET #e = :e", "ConditionExpression": "#t = :t",
                      "ExpressionAttributeNames": {"#e": "expires_at", "#t": "task_id"},
                      "ExpressionAttributeValues": {":e": expires, ":t": {"S": task.id}}}
        try:
            self.db.transact_write_items(TransactItems=[{"Update": {"TableName": self.name, **update}},
                                                        {"Update": key_update}])
            return True
        except ClientError as exc:
            reasons = cancellation_reasons(exc)
            if reasons[:1] == ["ConditionalCheckFailed"]:
                return False
            if reasons[1:2] != ["ConditionalCheckFailed"]:
                raise
        # The key item is not this task's (it cannot be, but never block a settle on it): the task alone.
        return self._conditional("update_item", **update)

    def mark_unsent(self, task_ids: Sequence[str]) -> None:
        """Queued tasks whose SQS message was not sent: due 0, so the next promote_due sends it again.

        Best effort: if this write fails too, the task's message is re-sent once its `due` is older
        than the resend interval anyway.
        """
        for task_id in task_ids:
            args = items.update({"due": num(0)}, condition="#status = :c_queued", names=["status"],
                                values={":c_queued": {"S": TaskStatus.QUEUED.value}})
            try:
                self._conditional("update_item", Key=items.task_key(task_id), **args)
            except (ClientError, BotoCoreError) as exc:
                log.warning("task %s: could not mark its message unsent (%s); resent later", task_id, exc)

    def _conditional(self, operation: str, **kwargs: Any) -> bool:
        try:
            self.call(operation, **kwargs)
        except ClientError as exc:
            if condition_failed(exc):
                return False
            raise
        return True


def check_size(task: Task, now: float) -> None:
    """Raise ValidationError when the task's item would not fit DynamoDB (with room for its runs)."""
    if not items.valid_id(task.id):
        raise ValidationError(f"a task id is 1 to {items.MAX_ID_BYTES} bytes of printable text", field="id")
    size = items.item_size(items.new_task_item(task, 2**63, now, 1.0))
    if size + items.SETTLE_HEADROOM > items.MAX_ITEM_BYTES:
        raise ValidationError(f"task {task.id} takes {size} bytes stored; the aws backend keeps a task under "
                              f"{items.MAX_ITEM_BYTES - items.SETTLE_HEADROOM} bytes (DynamoDB's item limit)",
                              field="payload")


def fit(task: Task) -> Task:
    """A task whose result, error, traceback or history would overflow its item keeps a note instead, so a settle
    never fails. The traceback goes first (the shorter error says what happened), then the history, then the
    result."""
    size = items.item_size(items.task_fields(task)) + items.KEY_AND_INDEX_BYTES
    if size <= items.MAX_ITEM_BYTES:
        return task
    if task.traceback is not None:
        shorter = replace(task, traceback=task.traceback[-1000:])
        if items.item_size(items.task_fields(shorter)) + items.KEY_AND_INDEX_BYTES <= items.MAX_ITEM_BYTES:
            return shorter
    if task.history:  # then the attempt history: its last attempt only, without its traceback
        task = replace(task, history=(replace(task.history[-1], traceback=None),))
        if items.item_size(items.task_fields(task)) + items.KEY_AND_INDEX_BYTES <= items.MAX_ITEM_BYTES:
            return task
    note = f"result dropped: the task would take {size} bytes stored, over the aws backend's item limit"
    return replace(task, result=None, traceback=None,
                   error=note if task.error is None else f"{note}; error: {task.error[:1000]}")

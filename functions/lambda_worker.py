"""AWS Lambda entry point for workers: one worker invocation per Lambda call.

Two kinds of event reach it:

- A direct invocation — `{"source": "hexq.poller"}` from hexq.functions.lambda_poller, or `{}` by hand: one
  worker invocation (hexq.core.worker) over the configured queues, sized to the time Lambda has left
  (`context.get_remaining_time_in_millis()`): a safety margin is kept back, the claiming budget takes at
  most half of the rest (and at most HEXQ_BUDGET), the grace for running tasks what remains (at most
  HEXQ_GRACE), so budget + grace + margin fits before the deadline. Leases are extended while tasks run,
  and whatever still runs after the grace is released (re-queued) before Lambda stops the process.
  Returns the invocation's Report as a dict.

- An SQS event-source batch — `{"Records": [{"eventSource": "aws:sqs", "messageId", "body"}, ...]}` whose
  bodies are task references `{"task_id": "..."}`, meaning "run that task if it is still queued". On the
  aws backend (which can claim by id) the invocation leases exactly the named tasks that are still
  queued. Other backends have no claim-by-id, so there the invocation claims at most as many tasks as
  the batch names queued ones (in the queues' usual priority order, so not necessarily those very
  tasks). Either way each named task is read again afterwards. A record
  fails — and SQS delivers it again later — when its body is not a task reference, its task is
  unknown, or its task is still queued; a task that ran (here or elsewhere), waits for a retry, or is
  finished needs nothing more from that message. The answer is
  `{"batchItemFailures": [{"itemIdentifier": messageId}, ...]}`, so one bad record never fails the batch.

The container and one event loop are built once per cold start and reused while the process is warm.
One loop rather than asyncio.run per call: asyncio.run closes its loop, and clients bound to a loop
(redis.asyncio pools) cannot move to the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any, Protocol, runtime_checkable

from hexq.core.model import Lease, Settlement, Task, TaskStatus
from hexq.core.ports import Broker
from hexq.core.worker import Invocation
from hexq.functions.bootstrap import Container, bootstrap
from hexq.functions.emf import flush, on_lambda
from hexq.functions.settings import Settings

log = logging.getLogger("hexq.worker")

SAFETY_MARGIN = 3.0
"""Seconds kept back from Lambda's deadline to settle the released tasks and return the report."""

MAX_TASK_ID = 256


class LambdaContext(Protocol):
    """The parts of Lambda's context object this module uses."""

    aws_request_id: str

    def get_remaining_time_in_millis(self) -> int: ...


class WorkerHandler:
    """The Lambda handler: `handler(event, context)`; one container and one event loop per process."""

    def __init__(self, container: Container, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.container = container
        self.loop = loop or asyncio.new_event_loop()

    def __call__(self, event: Mapping[str, Any], context: LambdaContext) -> dict[str, Any]:
        try:
            if is_sqs_batch(event):
                return self.loop.run_until_complete(run_batch(self.container, event["Records"], context))
            return self.loop.run_until_complete(run_direct(self.container, context))
        finally:
            flush(self.container.events)  # this invocation's metrics, before Lambda freezes the process

    def close(self) -> None:
        """Close the backend and the loop (Lambda never needs this; tests and scripts do)."""
        self.loop.run_until_complete(self.container.backend.close())
        self.loop.close()


def is_sqs_batch(event: Mapping[str, Any]) -> bool:
    records = event.get("Records")
    return bool(records) and isinstance(records, list) and all(
        isinstance(r, dict) and r.get("eventSource") == "aws:sqs" for r in records)


async def run_direct(container: Container, context: LambdaContext) -> dict[str, Any]:
    report = asdict(await invocation(container, context).run())
    log.info("invocation done", extra=report)
    return report


async def run_batch(container: Container, records: Sequence[Mapping[str, Any]],
                    context: LambdaContext) -> dict[str, Any]:
    named: dict[str, list[str]] = {}  # task id -> the message ids that name it
    failures: list[str] = []
    for record in records:
        task_id = task_reference(record.get("body"))
        if task_id is None:
            failures.append(str(record.get("messageId", "")))
        else:
            named.setdefault(task_id, []).append(str(record.get("messageId", "")))
    before = await _read(container, named)
    queued = sum(1 for task in before.values() if task is not None and task.status is TaskStatus.QUEUED)
    if queued:
        report = await invocation(container, context, broker=_batch_broker(container, before)).run()
        log.info("sqs batch invocation done", extra=asdict(report))
        before = await _read(container, named)
    for task_id, message_ids in named.items():
        task = before[task_id]
        if task is None or task.status is TaskStatus.QUEUED:
            failures.extend(message_ids)
    if failures:
        log.warning("%d of %d SQS records go back to the queue", len(failures), len(records))
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failures]}


def _batch_broker(container: Container, named: Mapping[str, Task | None]) -> Broker:
    """Exactly the named tasks where the backend can claim by id (aws), else as many as are named."""
    queued = [task_id for task_id, task in named.items() if task is not None and task.status is TaskStatus.QUEUED]
    backend = container.backend
    if isinstance(backend, ClaimsById):
        return NamedBroker(backend, queued)
    return CappedBroker(backend, len(queued))


def task_reference(body: object) -> str | None:
    """The task id of an SQS body `{"task_id": "..."}`; None for anything else."""
    if not isinstance(body, str):
        return None
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    task_id = data.get("task_id") if isinstance(data, dict) else None
    if isinstance(task_id, str) and 0 < len(task_id) <= MAX_TASK_ID:
        return task_id
    return None


async def _read(container: Container, task_ids: Mapping[str, object]) -> dict[str, Task | None]:
    # BackendUnavailable propagates: an outage is not a bad record, so the whole batch comes back later.
    return {task_id: await container.backend.get(task_id) for task_id in task_ids}


def invocation(container: Container, context: LambdaContext, *, broker: Broker | None = None) -> Invocation:
    """A worker invocation sized to the time Lambda has left, built by the container like every other."""
    budget, grace = time_plan(container.settings, context.get_remaining_time_in_millis() / 1000)
    return container.invocation(worker_id(context), broker=broker, budget=budget, grace=grace)


def time_plan(settings: Settings, remaining: float) -> tuple[float, float]:
    """(budget, grace) with budget + grace + SAFETY_MARGIN <= remaining.

    The budget takes at most half of what is left (and at most HEXQ_BUDGET); the grace gets the rest,
    up to HEXQ_GRACE, so a task claimed late still has time to finish.
    """
    available = max(0.0, remaining - SAFETY_MARGIN)
    budget = min(settings.budget, available / 2)
    return budget, min(settings.grace, available - budget)


def worker_id(context: LambdaContext) -> str:
    return f"lambda:{context.aws_request_id}"


class CappedBroker:
    """A Broker that hands out at most `limit` leases in all, then answers claims like an empty queue.

    While its tasks still run, such a claim waits (up to the claim's `wait`) for a settle, as a real
    empty queue would, so the invocation ends as soon as its last task is settled and never spins.
    """

    def __init__(self, inner: Broker, limit: int) -> None:
        self._inner = inner
        self._left = limit
        self._open = 0
        self._settled = asyncio.Event()

    async def enqueue(self, tasks: Sequence[Task], *, cap: int = 0) -> list[Task]:
        return await self._inner.enqueue(tasks, cap=cap)

    async def claim(self, queues: Sequence[str], n: int, *, lease_seconds: float, worker_id: str,
                    wait: float = 0.0) -> list[Lease]:
        if self._left <= 0:
            await self._exhausted(wait)
            return []
        leases = await self._inner.claim(queues, min(n, self._left), lease_seconds=lease_seconds,
                                         worker_id=worker_id, wait=wait)
        self._left -= len(leases)
        self._open += len(leases)
        return leases

    async def extend(self, leases: Sequence[Lease], lease_seconds: float) -> list[Lease | None]:
        return await self._inner.extend(leases, lease_seconds)

    async def settle(self, settlements: Sequence[Settlement]) -> list[bool]:
        applied = await self._inner.settle(settlements)
        self._open -= len(settlements)
        self._settled.set()
        return applied

    async def _exhausted(self, wait: float) -> None:
        if self._open <= 0:
            await asyncio.sleep(0)
            return
        self._settled.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._settled.wait(), timeout=wait)


def make_handler(container: Container) -> WorkerHandler:
    return WorkerHandler(container)


# The cold start: built once per process, reused by every warm invocation.
_settings = Settings.from_env()
handler = make_handler(bootstrap(_settings, events=on_lambda(_settings), serving=True))


@runtime_checkable
class ClaimsById(Protocol):
    """Backends whose SQS record is the delivery itself (aws) can lease exactly the tasks it names."""

    async def claim_ids(self, task_ids: Sequence[str], *, lease_seconds: float, worker_id: str) -> list[Lease]: ...


class NamedBroker(CappedBroker):
    """Hands out exactly the named tasks (those still queued), then answers claims like an empty queue."""

    def __init__(self, inner: Broker, task_ids: Sequence[str]) -> None:
        super().__init__(inner, len(task_ids))
        self._ids = list(task_ids)
        assert isinstance(inner, ClaimsById)
        self._by_id = inner

    async def claim(self, queues: Sequence[str], n: int, *, lease_seconds: float, worker_id: str,
                    wait: float = 0.0) -> list[Lease]:
        if not self._ids:
            await self._exhausted(wait)
            return []
        ids, self._ids = self._ids[:n], self._ids[n:]
        leases = await self._by_id.claim_ids(ids, lease_seconds=lease_seconds, worker_id=worker_id)
        self._left -= len(ids)
        self._open += len(leases)
        return leases

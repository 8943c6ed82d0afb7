"""Per-type limits hold on Lambda too: the Lambda worker's invocations come from the container (issue #9).

It once built its own Invocation without the rate limiter, so `@task(rate=...)` was ignored there.
The clock is frozen (FakeClock), so a type limited to one start a second gets exactly one token: one
task runs and the rest wait for a token until the invocation's grace is spent, then go back to the
queue. Without the limiter all of them would run.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pytest

from hexq.core.model import TaskStatus
from hexq.core.registry import Registry, TaskSpec
from hexq.core.services import SubmitRequest
from hexq.functions.bootstrap import Container

TASKS = 3


@dataclass
class Context:
    remaining_ms: int
    aws_request_id: str = "0b1c2d3e-limits"

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


async def _limited(payload: dict[str, Any]) -> str:
    return "ran"


@pytest.fixture
def lambda_worker(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    # The module builds a container of its own at import (a cold start): make that one cheap, and close it.
    monkeypatch.setenv("HEXQ_BACKEND", "memory://")
    monkeypatch.setenv("HEXQ_TASKS", "hexq.functions.examples")
    sys.modules.pop("hexq.functions.lambda_worker", None)
    module = importlib.import_module("hexq.functions.lambda_worker")
    yield module
    module.handler.close()
    sys.modules.pop("hexq.functions.lambda_worker", None)


@pytest.fixture
def handler(lambda_worker: ModuleType, registry: Registry, container: Container) -> Iterator[Any]:
    registry.register(TaskSpec("limited", _limited, rate=1.0))  # burst 1: one token, and the clock never moves
    handler = lambda_worker.WorkerHandler(container)
    yield handler
    handler.close()


def _submit_all(handler: Any, container: Container) -> list[str]:
    requests = [SubmitRequest("limited", {"i": i}) for i in range(TASKS)]
    return [s.task.id for s in handler.loop.run_until_complete(container.tasks.submit_bulk(requests))]


def _statuses(handler: Any, container: Container, ids: list[str]) -> list[TaskStatus]:
    async def read() -> list[TaskStatus]:
        return [task.status for task in await asyncio.gather(*(container.backend.get(i) for i in ids))]

    return sorted(handler.loop.run_until_complete(read()))


def _context(lambda_worker: ModuleType) -> Context:
    return Context(remaining_ms=int((lambda_worker.SAFETY_MARGIN + 1.0) * 1000))  # budget 0.5 s, grace 0.5 s


def test_a_direct_invocation_honours_the_types_rate(lambda_worker: ModuleType, handler: Any,
                                                    container: Container) -> None:
    ids = _submit_all(handler, container)

    report = handler({}, _context(lambda_worker))

    assert (report["claimed"], report["succeeded"], report["released"]) == (TASKS, 1, TASKS - 1)
    assert _statuses(handler, container, ids) == [TaskStatus.QUEUED] * (TASKS - 1) + [TaskStatus.SUCCEEDED]


def test_an_sqs_batch_honours_the_types_rate(lambda_worker: ModuleType, handler: Any, container: Container) -> None:
    ids = _submit_all(handler, container)
    records = [{"eventSource": "aws:sqs", "messageId": f"m{i}", "body": json.dumps({"task_id": task_id})}
               for i, task_id in enumerate(ids)]

    answer = handler({"Records": records}, _context(lambda_worker))

    assert _statuses(handler, container, ids) == [TaskStatus.QUEUED] * (TASKS - 1) + [TaskStatus.SUCCEEDED]
    assert len(answer["batchItemFailures"]) == TASKS - 1  # the tasks still queued come back with their messages


def test_every_invocation_the_container_builds_has_the_limiter(lambda_worker: ModuleType, container: Container) -> None:
    context = _context(lambda_worker)
    broker = lambda_worker.CappedBroker(container.backend, 1)

    for invocation in (container.invocation("w"), lambda_worker.invocation(container, context),
                       lambda_worker.invocation(container, context, broker=broker)):
        assert invocation.limiter is container.backend
    assert lambda_worker.invocation(container, context, broker=broker).broker is broker

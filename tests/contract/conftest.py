"""One contract suite for every backend: each test runs once per param of the `backend` fixture.

A backend joins the suite by adding a param here and a `<name>_backend` fixture; only the
backend a test asks for is built (getfixturevalue), so a missing server skips only its own leg.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from redis_server import LinkedClock, fresh_backend

from adapters.memory import MemoryBackend
from adapters.sqlite import SQLiteBackend
from core.clock import FakeClock
from core.model import Task, new_task_id
from core.ports import Backend
from core.registry import Registry, TaskSpec
from core.retry import RetryPolicy
from core.services import TaskService

BACKENDS = ["memory", "sqlite", pytest.param("redis", marks=pytest.mark.redis),
            pytest.param("redis_cluster", marks=pytest.mark.redis)]


@pytest.fixture
def clock() -> FakeClock:
    # Linked, so that advance() also moves the Redis backends' test-clock key (see adapters.redis).
    return LinkedClock()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    return request.getfixturevalue(f"{request.param}_backend")  # type: ignore[no-any-return]


@pytest.fixture
def memory_backend(clock: FakeClock) -> Backend:
    return MemoryBackend(clock)


@pytest.fixture
async def sqlite_backend(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Backend]:
    backend = SQLiteBackend(str(tmp_path / "hexq.db"), clock)
    yield backend
    await backend.close()


@pytest.fixture
async def redis_backend(redis_url: str, clock: LinkedClock) -> AsyncIterator[Backend]:
    async with fresh_backend(redis_url, clock) as backend:
        yield backend


@pytest.fixture
async def redis_cluster_backend(redis_cluster_url: str, clock: LinkedClock) -> AsyncIterator[Backend]:
    async with fresh_backend(redis_cluster_url, clock) as backend:
        yield backend


def _handler(payload: dict[str, Any]) -> Any:
    return payload


@pytest.fixture
def registry() -> Registry:
    """A fresh registry per test: `echo` on the default queue, `flaky` with exact (unjittered) backoff."""
    registry = Registry()
    registry.register(TaskSpec("echo", _handler))
    registry.register(TaskSpec("flaky", _handler, max_attempts=3, retry=RetryPolicy(base=10.0, cap=100.0, jitter=0.0)))
    registry.register(TaskSpec("mail", _handler, queue="emails"))
    return registry


@pytest.fixture
def service(backend: Backend, registry: Registry, clock: FakeClock) -> TaskService:
    return TaskService(backend, registry, clock)


@pytest.fixture
def make_task(clock: FakeClock) -> Callable[..., Task]:
    """Build a queued `echo` task due now; keyword arguments override any Task field."""

    def make(**fields: Any) -> Task:
        defaults: dict[str, Any] = {"id": new_task_id(), "type": "echo", "payload": {}, "run_at": clock.now(),
                                    "created_at": clock.now()}
        return Task(**(defaults | fields))

    return make

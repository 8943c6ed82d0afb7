"""Fixtures for the HTTP API: one client factory over a memory-backed container (starlette's style)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from starlette.testclient import TestClient

from hexq.adapters.memory import MemoryBackend
from hexq.core.clock import FakeClock
from hexq.core.errors import BackendUnavailable
from hexq.core.ports import Backend
from hexq.core.registry import Registry
from hexq.functions.api import create_app
from hexq.functions.bootstrap import Container, bootstrap
from hexq.functions.settings import Settings

ClientFactory = Callable[..., TestClient]


class DownBackend:
    """A memory backend whose every call fails as if the server were unreachable."""

    name = "down"

    def __init__(self, clock: FakeClock, retry_after: float = 2.5) -> None:
        self._inner = MemoryBackend(clock)
        self._retry_after = retry_after

    def __getattr__(self, attr: str) -> Any:
        getattr(self._inner, attr)  # only the backend's real methods exist here

        async def unavailable(*args: Any, **kwargs: Any) -> Any:
            raise BackendUnavailable("down", "connection refused", retry_after=self._retry_after)

        return unavailable


@pytest.fixture
def make_container(registry: Registry, clock: FakeClock) -> Callable[..., Container]:
    def make(backend: Backend | None = None, **settings: Any) -> Container:
        # A short idle_wait: a worker invocation in a test returns soon after the queue is empty.
        # Not 0: with nothing to wait on, hexq.core.worker's claim loop spins without yielding to running handlers.
        # serving: the API's container, as hexq serve and hexq api build it (metrics, task events).
        config = Settings(backend_url="memory://", task_modules=(), idle_wait=0.01, **settings)
        return bootstrap(config, clock=clock, registry=registry, backend=backend, serving=True)

    return make


@pytest.fixture
def container(make_container: Callable[..., Container]) -> Container:
    return make_container()


@pytest.fixture
def make_client(container: Container) -> Iterator[ClientFactory]:
    """make_client(container=None, raise_server_exceptions=True) -> an open TestClient, closed at teardown.

    Server exceptions are raised into the test by default: a 500 from client input fails loudly.
    """
    with ExitStack() as stack:

        def make(for_container: Container | None = None, *, raise_server_exceptions: bool = True) -> TestClient:
            app = create_app(for_container or container)
            return stack.enter_context(TestClient(app, raise_server_exceptions=raise_server_exceptions))

        yield make


@pytest.fixture
def client(make_client: ClientFactory) -> TestClient:
    return make_client()


@pytest.fixture
def down_client(make_client: ClientFactory, make_container: Callable[..., Container],
                clock: FakeClock) -> TestClient:
    return make_client(make_container(backend=DownBackend(clock)))


@pytest.fixture(autouse=True)
def _keep_root_logger() -> Iterator[None]:
    """The CLI's main() configures logging for the process; put the root logger back for the next test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)

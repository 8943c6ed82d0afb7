"""Shared fixtures: a fake clock and a fresh task registry with test task types."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from hexq.core.clock import FakeClock
from hexq.core.registry import Registry
from hexq.core.retry import RetryPolicy


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_registry() -> Registry:
    """Task types for tests: echo, boom (always raises), slow (sleeps), and sync_echo."""
    registry = Registry()

    @registry.task("echo")
    async def echo(payload: dict[str, Any]) -> dict[str, Any]:
        return payload

    @registry.task("sync_echo")
    def sync_echo(payload: dict[str, Any]) -> dict[str, Any]:
        return payload

    @registry.task("boom", max_attempts=3, retry=RetryPolicy(base=10.0, cap=100.0, jitter=0.0))
    async def boom(payload: dict[str, Any]) -> None:
        raise RuntimeError(payload.get("message", "boom"))

    @registry.task("slow", timeout=5.0)
    async def slow(payload: dict[str, Any]) -> str:
        await asyncio.sleep(float(payload.get("seconds", 10)))
        return "done"

    return registry


@pytest.fixture
def registry() -> Registry:
    return make_registry()


# -- Redis servers (owned by the Redis adapter; helpers in tests/redis_server.py) ---------------------
# Session-scoped: one server (a container or a redis-server process) and one 3-master cluster per
# run, started only when a test asks for them. Tests flush the database themselves.
# (Imported here rather than at the top so that this section stays self-contained.)
from collections.abc import Iterator  # noqa: E402

import redis_server  # noqa: E402


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server.single_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server.cluster(tmp_path_factory.mktemp("redis-cluster")) as url:
        yield url


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for used in redis_server.USED:
        terminalreporter.write_line(f"redis: {used}")


# -- promtool (Debian's prometheus package; .ci/run installs it) -------------------------------------------
@pytest.fixture(scope="session")
def promtool() -> str:
    """promtool's path: a skip where it is missing, a failure in CI, like Redis."""
    import os
    import shutil

    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is required in CI (Debian's prometheus package; .ci/run installs it)")
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    return path

"""Shared fixtures: a fake clock and a fresh task registry with test task types."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from core.clock import FakeClock
from core.registry import Registry
from core.retry import RetryPolicy


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

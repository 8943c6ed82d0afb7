"""Task types for the client tests, registered in the global registry through the public `hexq.task`.

Imported by name (`tasks=["client_tasks"]`, HEXQ_TASKS), as an application's task module would be:
tests/functions is on sys.path while its tests run.
"""

from __future__ import annotations

import asyncio
from typing import Any

from hexq import RetryPolicy, task

NOBODY = "client.nobody"  # a queue no test worker claims from: its tasks wait until they are cancelled


@task("client.echo")
async def echo(payload: dict[str, Any]) -> dict[str, Any]:
    return payload


@task("client.double")
def double(payload: dict[str, Any]) -> dict[str, Any]:
    return {"doubled": payload["n"] * 2}


def _explode(payload: dict[str, Any]) -> None:
    raise RuntimeError(payload.get("message", "boom"))


@task("client.boom", max_attempts=1, retry=RetryPolicy(base=0.01, cap=0.01, jitter=0.0))
def boom(payload: dict[str, Any]) -> None:
    _explode(payload)


@task("client.sleep")
async def sleep(payload: dict[str, Any]) -> str:
    await asyncio.sleep(float(payload.get("seconds", 60)))
    return "slept"


def _positive(payload: dict[str, Any]) -> None:
    if not isinstance(payload.get("n"), int) or payload["n"] <= 0:
        raise ValueError("n must be a positive integer")


@task("client.checked", validate=_positive)
def checked(payload: dict[str, Any]) -> int:
    return int(payload["n"])

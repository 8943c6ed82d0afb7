"""hexq: a distributed task queue built as serverless-style functions over a pluggable backend.

The public face, for applications:

    from hexq import task, Client, AsyncClient

    @task("double")
    def double(payload: dict) -> dict:
        return {"doubled": payload["n"] * 2}

    with Client.from_url("sqlite:///hexq.db") as client:   # or redis://…, or http://… with api_key=
        print(client.submit(double, {"n": 21}).result(timeout=30))

The code lives in hexq.core (the domain), hexq.adapters (the backends) and hexq.functions (entry
points, the composition root and the clients). `import hexq` loads no driver: redis, boto3 or httpx
is imported when a client (or server) of that kind is made.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from hexq.core.breaker import Breaker
from hexq.core.errors import (
    BackendUnavailable,
    ConfigurationError,
    IdempotencyMismatch,
    InvalidTransition,
    Overloaded,
    QueueError,
    QueueFull,
    ScheduleNameTaken,
    ScheduleNotFound,
    TaskNotFound,
    UnknownTaskType,
    ValidationError,
)
from hexq.core.model import Page, Priority, Stats, Task, TaskStatus
from hexq.core.retry import Retry, RetryPolicy
from hexq.core.schedule import Schedule
from hexq.functions.client import (
    ApiError,
    AsyncClient,
    AsyncTaskHandle,
    Client,
    TaskCancelled,
    TaskFailed,
    TaskFunction,
    TaskHandle,
    TaskRequest,
    WaitTimeout,
    configure,
    default_client,
    task,
)

try:
    __version__ = version("hexq")
except PackageNotFoundError:  # a checkout that was never installed
    __version__ = "0+unknown"

__all__ = [
    "ApiError",
    "AsyncClient",
    "AsyncTaskHandle",
    "BackendUnavailable",
    "Breaker",
    "Client",
    "ConfigurationError",
    "IdempotencyMismatch",
    "InvalidTransition",
    "Overloaded",
    "Page",
    "Priority",
    "QueueError",
    "QueueFull",
    "Retry",
    "RetryPolicy",
    "Schedule",
    "ScheduleNameTaken",
    "ScheduleNotFound",
    "Stats",
    "Task",
    "TaskCancelled",
    "TaskFailed",
    "TaskFunction",
    "TaskHandle",
    "TaskNotFound",
    "TaskRequest",
    "TaskStatus",
    "UnknownTaskType",
    "ValidationError",
    "WaitTimeout",
    "configure",
    "default_client",
    "task",
]

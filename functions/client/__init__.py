"""Clients for applications: submit, follow and manage tasks from Python, over a backend or a hexq API.

    Client.from_url("sqlite:///hexq.db")            # or redis://…, redis+cluster://…, aws://…, memory://
    Client.from_url("https://hexq.example.com", api_key="hexq_…")   # a hexq API

Both flavours have the same methods (AsyncClient for asyncio code). Drivers are imported when a client
of their kind is made: redis or boto3 for a backend URL, httpx for an http(s) one.
"""

from __future__ import annotations

from hexq.functions.client.aio import AsyncClient, AsyncTaskHandle
from hexq.functions.client.errors import ApiError, RemoteTraceback, TaskCancelled, TaskFailed, WaitTimeout
from hexq.functions.client.sync import Client, TaskHandle
from hexq.functions.client.tasks import TaskFunction, configure, default_client, task
from hexq.functions.client.transport import PriorityLike, ScheduleRequest, TaskRequest, Transport

__all__ = [
    "ApiError",
    "AsyncClient",
    "AsyncTaskHandle",
    "Client",
    "PriorityLike",
    "RemoteTraceback",
    "ScheduleRequest",
    "TaskCancelled",
    "TaskFailed",
    "TaskFunction",
    "TaskHandle",
    "TaskRequest",
    "Transport",
    "WaitTimeout",
    "configure",
    "default_client",
    "task",
]

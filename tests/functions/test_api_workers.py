"""GET /v1/workers and the depth/oldest_age of GET /v1/stats, checked against the OpenAPI document."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.testclient import TestClient

from hexq.core.clock import FakeClock
from hexq.core.model import WorkerInfo
from hexq.functions.bootstrap import Container
from tests.functions.test_api_openapi import check


def test_workers_lists_the_live_workers_by_id(client: TestClient, container: Container, clock: FakeClock) -> None:
    for worker_id in ("w2", "w1"):
        asyncio.run(container.backend.beat(WorkerInfo(worker_id, "box", 7, ("default",), running=3), 15.0))

    response = client.get("/v1/workers")

    assert response.status_code == 200
    assert response.json() == {"workers": [
        {"id": w, "host": "box", "pid": 7, "queues": ["default"], "started_at": clock.now(), "last_seen": clock.now(),
         "running": 3} for w in ("w1", "w2")]}
    check(client.get("/openapi.json").json(), "/v1/workers", response)


def test_stats_has_depth_and_oldest_age(client: TestClient, clock: FakeClock) -> None:
    assert client.post("/v1/tasks", json={"type": "echo", "priority": "high"}).status_code == 202
    assert client.post("/v1/tasks", json={"type": "echo", "delay": 60}).status_code == 202
    clock.advance(4)

    response = client.get("/v1/stats")

    body: dict[str, Any] = response.json()
    assert body["depth"] == [{"queue": "default", "priority": "normal", "state": "scheduled", "count": 1},
                             {"queue": "default", "priority": "high", "state": "queued", "count": 1}]
    assert body["oldest_age"] == [{"queue": "default", "priority": "high", "seconds": 4.0}]
    check(client.get("/openapi.json").json(), "/v1/stats", response)

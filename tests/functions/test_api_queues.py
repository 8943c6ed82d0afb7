"""GET /v1/queues, POST /v1/queues/{queue}:pause and :resume (admin), and `paused` in GET /v1/stats."""

from __future__ import annotations

import asyncio

from starlette.testclient import TestClient

from hexq.functions.bootstrap import Container
from tests.functions.test_api_openapi import check


def test_pause_and_resume_say_whether_they_changed_anything(client: TestClient) -> None:
    first = client.post("/v1/queues/emails:pause")
    again = client.post("/v1/queues/emails:pause")

    assert (first.status_code, first.json()) == (200, {"queue": "emails", "paused": True, "changed": True})
    assert again.json() == {"queue": "emails", "paused": True, "changed": False}
    assert client.post("/v1/queues/emails:resume").json() == {"queue": "emails", "paused": False, "changed": True}
    assert client.post("/v1/queues/emails:resume").json()["changed"] is False
    check(client.get("/openapi.json").json(), "/v1/queues/{queue}:pause", first)


def test_a_queue_name_may_hold_a_colon(client: TestClient, container: Container) -> None:
    assert client.post("/v1/queues/eu:mail:pause").json() == {"queue": "eu:mail", "paused": True, "changed": True}
    assert asyncio.run(container.backend.paused()) == frozenset({"eu:mail"})


def test_a_bad_queue_name_is_422(client: TestClient) -> None:
    response = client.post("/v1/queues/no%20spaces:pause")

    assert response.status_code == 422
    assert response.json()["error"] == "validation_error" and response.json()["details"]["field"] == "queue"


def test_queues_lists_depth_and_the_paused_flag(client: TestClient) -> None:
    for body in ({"type": "echo"}, {"type": "echo"}, {"type": "echo", "delay": 60}):
        assert client.post("/v1/tasks", json=body).status_code == 202
    client.post("/v1/queues/idle:pause")

    response = client.get("/v1/queues")

    assert response.status_code == 200
    assert response.json() == {"queues": [
        {"name": "default", "paused": False, "depth": 2, "running": 0, "scheduled": 1, "dead": 0},
        {"name": "idle", "paused": True, "depth": 0, "running": 0, "scheduled": 0, "dead": 0}]}
    check(client.get("/openapi.json").json(), "/v1/queues", response)


def test_stats_lists_the_paused_queues(client: TestClient) -> None:
    client.post("/v1/queues/b:pause")
    client.post("/v1/queues/a:pause")

    response = client.get("/v1/stats")

    assert response.json()["paused"] == ["a", "b"]
    check(client.get("/openapi.json").json(), "/v1/stats", response)


def test_submits_are_accepted_while_the_queue_is_paused(client: TestClient) -> None:
    client.post("/v1/queues/default:pause")

    assert client.post("/v1/tasks", json={"type": "echo"}).status_code == 202

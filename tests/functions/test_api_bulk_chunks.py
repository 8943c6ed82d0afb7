"""Bulk actions in chunks, as the dashboard and `hexq dead --replay-matching` run them: the total is confirmed
once, each chunk sends what is left of it as `confirm`, so the run never acts on more than was confirmed."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.testclient import TestClient

from hexq.functions.bootstrap import Container


def submit(client: TestClient, **body: Any) -> str:
    response = client.post("/v1/tasks", json={"type": "echo", **body})
    assert response.status_code == 202, response.json()
    return str(response.json()["id"])


def chunks(client: TestClient, path: str, where: dict[str, Any], total: int, size: int) -> list[Any]:
    """The dashboard's loop (functions/ui/static/app.js, chunkedBulk): answers until nothing is left."""
    answers, left = [], total
    while left > 0:
        response = client.post(path, json={"filter": where, "limit": size, "confirm": left})
        answers.append(response)
        if response.status_code != 200:
            break
        acted = response.json()["done"] + response.json()["pending"] + response.json()["skipped"]
        left -= acted
        if acted == 0 or response.json()["complete"]:
            break
    return answers


def kill(client: TestClient, container: Container, n: int, batch: str) -> None:
    for i in range(n):
        submit(client, type="boom", max_attempts=1, payload={"batch": batch, "n": i})
    asyncio.run(container.invocation("w").run())


def test_a_chunked_replay_replays_every_match_once(client: TestClient, container: Container) -> None:
    kill(client, container, 12, "b1")
    kill(client, container, 2, "b2")
    where = {"search": '"batch":"b1"'}
    total = client.post("/v1/dead:replay?dry_run=1", json={"filter": where}).json()["matched"]

    answers = chunks(client, "/v1/dead:replay", where, total, 5)

    assert total == 12 and [a.json()["done"] for a in answers] == [5, 5, 2]
    dead = client.get("/v1/dead?limit=100").json()["tasks"]
    assert sorted(t["payload"]["batch"] for t in dead) == ["b2", "b2"]


def test_a_later_chunk_never_replays_more_than_was_confirmed(client: TestClient, container: Container) -> None:
    kill(client, container, 7, "b1")
    where = {"search": '"batch":"b1"'}
    total = client.post("/v1/dead:replay?dry_run=1", json={"filter": where}).json()["matched"]
    first = client.post("/v1/dead:replay", json={"filter": where, "limit": 5, "confirm": total}).json()
    kill(client, container, 3, "b1")  # more match now than the 2 left of the confirmed 7 (the 5 replayed died again)
    before = len(client.get("/v1/dead?limit=100").json()["tasks"])

    last = client.post("/v1/dead:replay", json={"filter": where, "limit": 5, "confirm": total - first["done"]})

    assert last.status_code == 409 and last.json()["details"] == {"matched": 3, "confirm": 2}
    assert len(client.get("/v1/dead?limit=100").json()["tasks"]) == before == 10  # the 409 changed nothing


def test_a_chunked_cancel_reaches_every_running_task_once(client: TestClient, container: Container) -> None:
    ids = [submit(client) for _ in range(5)]
    asyncio.run(container.backend.claim(["default"], 5, lease_seconds=60, worker_id="w"))
    where = {"status": "running"}
    total = client.post("/v1/tasks:cancel?dry_run=1", json={"filter": where}).json()["matched"]

    answers = chunks(client, "/v1/tasks:cancel", where, total, 2)

    assert total == 5 and [a.json()["pending"] for a in answers] == [2, 2, 1]
    asked = [asyncio.run(container.backend.lease(task_id)) for task_id in ids]
    assert all(lease is not None and lease.cancel_requested for lease in asked)
    again = client.post("/v1/tasks:cancel?dry_run=1", json={"filter": where}).json()
    assert again["matched"] == 0  # already asked: a new run does not count them again

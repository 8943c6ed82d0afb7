"""GET /v1/tasks?search=, POST /v1/tasks:cancel and POST /v1/dead:replay by filter (dry run, confirm, 409)."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.testclient import TestClient

from hexq.functions.bootstrap import Container
from tests.functions.test_api_openapi import check


def submit(client: TestClient, **body: Any) -> dict[str, Any]:
    response = client.post("/v1/tasks", json={"type": "echo", **body})
    assert response.status_code == 202, response.json()
    return response.json()  # type: ignore[no-any-return]


def test_search_answers_matches_and_what_was_scanned(client: TestClient) -> None:
    ann = submit(client, payload={"to": "ann@example.com"})
    submit(client, payload={"to": "bob@example.com"})

    response = client.get("/v1/tasks", params={"search": "ann@"})

    assert response.status_code == 200
    body = response.json()
    assert [t["id"] for t in body["tasks"]] == [ann["id"]]
    assert (body["scanned"], body["complete"], body["next_cursor"]) == (2, True, None)
    check(client.get("/openapi.json").json(), "/v1/tasks", response)


def test_a_search_over_200_characters_is_422(client: TestClient) -> None:
    response = client.get("/v1/tasks", params={"search": "x" * 201})

    assert response.status_code == 422 and response.json()["details"]["field"] == "search"


def test_cancel_by_filter_counts_first_then_needs_that_count(client: TestClient) -> None:
    vip = [submit(client, payload={"vip": True, "n": i}) for i in range(3)]
    other = submit(client, payload={"vip": False})
    body = {"filter": {"status": "queued", "search": '"vip":true'}}

    dry = client.post("/v1/tasks:cancel?dry_run=1", json=body)
    assert dry.status_code == 200
    assert dry.json() == {"dry_run": True, "matched": 3, "scanned": 4, "complete": True, "confirm": 3}
    check(client.get("/openapi.json").json(), "/v1/tasks:cancel", dry)

    submit(client, payload={"vip": True, "late": 1})  # the filter now means one more task than was counted
    stale = client.post("/v1/tasks:cancel", json={**body, "confirm": 3})
    assert stale.status_code == 409
    assert stale.json()["error"] == "confirm_mismatch" and stale.json()["details"] == {"matched": 4, "confirm": 3}
    assert all(client.get(f"/v1/tasks/{t['id']}").json()["status"] == "queued" for t in vip)

    done = client.post("/v1/tasks:cancel", json={**body, "confirm": 4})
    assert done.status_code == 200
    assert done.json() | {"scanned": 0} == {"dry_run": False, "matched": 4, "scanned": 0, "complete": True,
                                            "done": 4, "pending": 0, "skipped": 0}
    assert all(client.get(f"/v1/tasks/{t['id']}").json()["status"] == "cancelled" for t in vip)
    assert client.get(f"/v1/tasks/{other['id']}").json()["status"] == "queued"


def test_cancel_by_filter_needs_confirm_and_a_cancellable_status(client: TestClient) -> None:
    assert client.post("/v1/tasks:cancel", json={"filter": {}}).json()["details"]["field"] == "confirm"
    dead = client.post("/v1/tasks:cancel", json={"filter": {"status": "dead"}, "confirm": 1})
    assert dead.status_code == 422 and dead.json()["details"]["field"] == "filter.status"
    assert client.post("/v1/tasks:cancel", json={"filter": {}, "limit": 10_001, "confirm": 1}).status_code == 422


def test_replay_by_filter(client: TestClient, container: Container) -> None:
    for n in range(3):
        submit(client, type="boom", max_attempts=1, payload={"batch": "b7" if n < 2 else "b8"})
    asyncio.run(container.invocation("w").run())
    body = {"filter": {"search": '"batch":"b7"'}}

    dry = client.post("/v1/dead:replay?dry_run=1", json=body).json()
    assert (dry["matched"], dry["confirm"]) == (2, 2)
    response = client.post("/v1/dead:replay", json={**body, "confirm": 2})

    assert response.status_code == 200 and response.json()["done"] == 2
    assert [t["payload"] for t in client.get("/v1/dead").json()["tasks"]] == [{"batch": "b8"}]
    check(client.get("/openapi.json").json(), "/v1/dead:replay", response)

"""GET /v1/tasks and /v1/dead with priority, created_after and created_before, and the bulk filter with them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from starlette.testclient import TestClient

from hexq.core.clock import FakeClock
from hexq.functions.bootstrap import Container
from tests.functions.test_api_openapi import check


def submit(client: TestClient, **body: Any) -> dict[str, Any]:
    response = client.post("/v1/tasks", json={"type": "echo", **body})
    assert response.status_code == 202, response.json()
    return response.json()  # type: ignore[no-any-return]


def ids(client: TestClient, path: str = "/v1/tasks", **params: Any) -> list[str]:
    response = client.get(path, params=params)
    assert response.status_code == 200, response.json()
    check(client.get("/openapi.json").json(), path, response)
    return [t["id"] for t in response.json()["tasks"]]


def test_priority_by_name_or_number(client: TestClient) -> None:
    high = submit(client, priority="high")
    submit(client, priority="low")

    assert ids(client, priority="high") == ids(client, priority="2") == [high["id"]]
    assert ids(client, priority="critical") == []


def test_the_created_window_in_epoch_seconds_or_iso_8601(client: TestClient, clock: FakeClock) -> None:
    old = submit(client)
    clock.advance(60)
    new = submit(client)
    start = new["created_at"]
    iso = datetime.fromtimestamp(start, UTC).isoformat()

    assert ids(client, created_after=start) == ids(client, created_after=iso) == [new["id"]]
    assert ids(client, created_before=iso) == [old["id"]]
    assert ids(client, created_after=start, created_before=start) == []
    assert ids(client, created_after="", priority="") == [new["id"], old["id"]]  # empty counts as absent


def test_dead_listing_takes_the_same_filters(client: TestClient, container: Container, clock: FakeClock) -> None:
    submit(client, type="boom", max_attempts=1, priority="high")
    clock.advance(60)
    later = submit(client, type="boom", max_attempts=1, priority="low")
    asyncio.run(container.invocation("w").run())

    assert ids(client, "/v1/dead", priority="low") == [later["id"]]
    assert ids(client, "/v1/dead", created_after=later["created_at"]) == [later["id"]]


@pytest.mark.parametrize(("field", "value"), [
    ("priority", "urgent"), ("priority", "7"), ("priority", "true"), ("created_after", "yesterday"),
    ("created_before", "nan"), ("created_after", "inf"), ("created_before", "1e999"), ("created_after", "9" * 500),
    ("created_before", "2026-13-45T00:00:00"),
])
@pytest.mark.parametrize("path", ["/v1/tasks", "/v1/dead"])
def test_a_bad_filter_is_422_naming_the_field(client: TestClient, path: str, field: str, value: str) -> None:
    response = client.get(path, params={field: value})

    assert response.status_code == 422, response.json()
    assert response.json()["details"]["field"] == field


def test_cancel_matching_honours_priority_and_the_window(client: TestClient, clock: FakeClock) -> None:
    old_high = submit(client, priority="high")
    clock.advance(60)
    new_high, new_low = submit(client, priority="high"), submit(client, priority="low")
    body = {"filter": {"status": "queued", "priority": "high", "created_after": new_high["created_at"]}}

    dry = client.post("/v1/tasks:cancel?dry_run=1", json=body)
    assert dry.status_code == 200 and dry.json()["matched"] == 1
    done = client.post("/v1/tasks:cancel", json={**body, "confirm": 1})

    assert done.status_code == 200 and done.json()["done"] == 1
    statuses = {t["id"]: client.get(f"/v1/tasks/{t['id']}").json()["status"] for t in (old_high, new_high, new_low)}
    assert statuses == {old_high["id"]: "queued", new_high["id"]: "cancelled", new_low["id"]: "queued"}


def test_replay_matching_honours_priority(client: TestClient, container: Container) -> None:
    submit(client, type="boom", max_attempts=1, priority="critical")
    submit(client, type="boom", max_attempts=1, priority=0)
    asyncio.run(container.invocation("w").run())
    body = {"filter": {"priority": 3}}

    assert client.post("/v1/dead:replay?dry_run=1", json=body).json()["matched"] == 1
    assert client.post("/v1/dead:replay", json={**body, "confirm": 1}).json()["done"] == 1
    assert [t["priority"] for t in client.get("/v1/dead").json()["tasks"]] == ["low"]


@pytest.mark.parametrize(("field", "value"), [("priority", True), ("priority", "urgent"), ("priority", 1.5),
                                              ("created_after", "soon"), ("created_before", [1]),
                                              ("created_after", True)])
def test_a_bad_bulk_filter_is_422_naming_the_field(client: TestClient, field: str, value: Any) -> None:
    response = client.post("/v1/tasks:cancel?dry_run=1", json={"filter": {field: value}})

    assert response.status_code == 422, response.json()
    assert response.json()["details"]["field"] == f"filter.{field}"


def test_the_filters_are_documented_where_they_are_read(client: TestClient) -> None:
    from hexq.functions.bulk_wire import _FILTER_FIELDS

    doc = client.get("/openapi.json").json()
    for path in ("/v1/tasks", "/v1/dead"):
        names = {p["name"] for p in doc["paths"][path]["get"]["parameters"]}
        assert {"priority", "created_after", "created_before", "search"} <= names, path
    assert set(doc["components"]["schemas"]["BulkFilter"]["properties"]) == set(_FILTER_FIELDS)

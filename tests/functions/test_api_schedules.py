"""Schedules, health and the index."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from hexq.core.clock import FakeClock
from hexq.core.schedule import MAX_FIRE_TIME


def put(client: TestClient, name: str, **body: Any) -> Any:
    return client.put(f"/v1/schedules/{name}", json={"spec": "@every 1m", "type": "echo", **body})


def test_put_get_list_delete_a_schedule(client: TestClient, clock: FakeClock) -> None:
    response = put(client, "every-minute", payload={"n": 1}, queue="mail", priority="high")

    assert response.status_code == 200
    expected = {"name": "every-minute", "spec": "@every 1m", "type": "echo", "payload": {"n": 1}, "queue": "mail",
                "priority": "high", "next_run": clock.now() + 60, "last_run": None, "enabled": True,
                "tenant": "default"}
    assert response.json() == expected
    assert client.get("/v1/schedules/every-minute").json() == expected
    assert client.get("/v1/schedules").json() == {"schedules": [expected]}

    deleted = client.delete("/v1/schedules/every-minute")

    assert (deleted.status_code, deleted.content) == (204, b"")
    assert client.get("/v1/schedules/every-minute").status_code == 404
    assert client.get("/v1/schedules").json() == {"schedules": []}


def test_put_replaces_and_takes_cron_and_enabled(client: TestClient) -> None:
    put(client, "nightly")

    response = put(client, "nightly", spec="0 3 * * *", enabled=False, priority=True)

    assert response.status_code == 200
    assert (response.json()["spec"], response.json()["enabled"], response.json()["priority"]) == (
        "0 3 * * *", False, "high")
    assert len(client.get("/v1/schedules").json()["schedules"]) == 1


def test_schedule_names_may_contain_colons(client: TestClient) -> None:
    assert put(client, "team:report.v2").status_code == 200
    assert client.get("/v1/schedules/team:report.v2").json()["name"] == "team:report.v2"


@pytest.mark.parametrize(("name", "body", "code", "field"), [
    ("s", {"spec": "every minute"}, "validation_error", "spec"),
    ("s", {"spec": "61 * * * *"}, "validation_error", "spec"),
    ("s", {"spec": "@every 0.5s"}, "validation_error", "spec"),
    ("s", {"spec": 5}, "validation_error", "spec"),
    ("s", {"type": "nope"}, "unknown_task_type", "type"),
    ("s", {"type": ["echo"]}, "validation_error", "type"),
    ("s", {"payload": "x"}, "validation_error", "payload"),
    ("s", {"queue": "no spaces"}, "validation_error", "queue"),
    ("s", {"priority": "urgent"}, "validation_error", "priority"),
    ("s", {"enabled": "yes"}, "validation_error", "enabled"),
    ("s", {"next_run": 0}, "validation_error", "next_run"),
    ("bad name!", {}, "validation_error", "name"),
    ("x" * 65, {}, "validation_error", "name"),
])
def test_a_bad_schedule_is_422(client: TestClient, name: str, body: dict[str, Any], code: str, field: str) -> None:
    response = put(client, name, **body)

    assert (response.status_code, response.json()["error"], response.json()["details"]) == (422, code,
                                                                                            {"field": field})
    assert client.get("/v1/schedules").json() == {"schedules": []}


@pytest.mark.parametrize("spec", [
    "@every 99999999999999999d",  # issue #9: stored, then every GET /v1/schedules answered 500
    "@every " + "9" * 400 + "d",  # not even finite: this PUT itself answered 500, after storing it
    "@every " + "9999999d" * 3000,  # many parts summing past year 9999
    "@every 0.0000001ms",
    "0 0 31 2 *",  # a cron expression that never fires
    "0 0 1 1 * 0 2020",  # a year field in the past: croniter finds no next time
    "* * * * * * 3000",  # a year croniter refuses
    "*/0 * * * *",
    "99999999999999999999 * * * *",
    "* * * * * " + "9" * 5000,  # croniter's int() of it passes Python's 4300-digit limit
])
def test_a_schedule_that_never_fires_within_the_range_is_422_and_not_stored(client: TestClient, spec: str) -> None:
    response = put(client, "far", spec=spec)

    assert (response.status_code, response.json()["error"], response.json()["details"]) == (
        422, "validation_error", {"field": "spec"})
    listing = client.get("/v1/schedules")
    assert (listing.status_code, listing.json()) == (200, {"schedules": []})


def test_a_schedule_may_fire_up_to_the_last_second_of_year_9999(client: TestClient, clock: FakeClock) -> None:
    days = (MAX_FIRE_TIME - clock.now()) // 86_400

    response = put(client, "far", spec=f"@every {days:.0f}d")

    assert response.status_code == 200
    assert response.json()["next_run"] == clock.now() + days * 86_400 <= MAX_FIRE_TIME
    assert put(client, "farther", spec=f"@every {days + 1:.0f}d").status_code == 422


def test_spec_and_type_are_required(client: TestClient) -> None:
    response = client.put("/v1/schedules/s", json={"type": "echo"})

    assert (response.status_code, response.json()["details"]) == (422, {"field": "spec"})


def test_healthz_is_always_ok(client: TestClient, down_client: TestClient) -> None:
    for c in (client, down_client):
        assert (c.get("/healthz").status_code, c.get("/healthz").json()) == (200, {"status": "ok"})


def test_readyz_is_200_when_the_backend_answers(client: TestClient) -> None:
    assert (client.get("/readyz").status_code, client.get("/readyz").json()) == (200, {"status": "ready"})


def test_readyz_is_503_with_retry_after_when_it_does_not(down_client: TestClient) -> None:
    response = down_client.get("/readyz")

    assert (response.status_code, response.json()["error"], response.headers["retry-after"]) == (
        503, "backend_unavailable", "3")


def test_head_works_wherever_get_does(client: TestClient) -> None:
    response = client.head("/healthz")

    assert (response.status_code, response.content) == (200, b"")


def test_the_index_links_to_the_api(client: TestClient) -> None:
    links = client.get("/").json()["links"]

    assert links["openapi"] == "/openapi.json"
    for path in links.values():
        assert client.get(path).status_code == 200, path

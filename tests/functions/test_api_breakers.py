"""GET /v1/breakers, POST /v1/breakers/{name}:open and :close (admin)."""

from __future__ import annotations

import asyncio

from starlette.testclient import TestClient

from hexq.core.breaker import Breaker, Circuit
from hexq.core.clock import FakeClock
from hexq.core.registry import Registry, TaskSpec
from hexq.functions.bootstrap import Container
from tests.functions.test_api_openapi import check


def test_declared_breakers_are_listed_closed_before_anything_is_stored(registry: Registry,
                                                                       client: TestClient) -> None:
    policy = Breaker(failures=3, reset=20.0, name="payments")
    for name in ("charge", "refund"):
        registry.register(TaskSpec(name, lambda p: p, breaker=policy))

    response = client.get("/v1/breakers")

    assert response.status_code == 200
    assert response.json() == {"breakers": [{
        "name": "payments", "state": "closed", "forced": False, "opened_at": None, "reopens_at": None,
        "failures": 0, "recent_failures": 0, "recent": 0, "types": ["charge", "refund"],
        "policy": {"failures": 3, "ratio": 0.0, "window": 20, "reset": 20.0, "successes": 1}}]}
    check(client.get("/openapi.json").json(), "/v1/breakers", response)


def test_open_forces_it_open_on_the_backend_and_close_closes_it(client: TestClient, container: Container,
                                                               clock: FakeClock) -> None:
    opened = client.post("/v1/breakers/mail:open")

    assert opened.status_code == 200
    assert opened.json() | {"policy": None} == {
        "name": "mail", "state": "open", "forced": True, "opened_at": clock.now(), "reopens_at": None,
        "failures": 0, "recent_failures": 0, "recent": 0, "types": [], "policy": None}
    check(client.get("/openapi.json").json(), "/v1/breakers/{name}:open", opened)
    _, [stored] = asyncio.run(container.backend.breaker_states())
    assert (stored.circuit, stored.forced) == (Circuit.OPEN, True)

    closed = client.post("/v1/breakers/mail:close")
    assert closed.status_code == 200 and closed.json()["state"] == "closed"
    assert [b["state"] for b in client.get("/v1/breakers").json()["breakers"]] == ["closed"]


def test_a_bad_breaker_name_is_422(client: TestClient) -> None:
    response = client.post("/v1/breakers/no%20spaces:open")

    assert response.status_code == 422
    assert response.json()["details"]["field"] == "breaker"


def test_an_unavailable_backend_is_503(down_client: TestClient) -> None:
    assert down_client.get("/v1/breakers").status_code == 503
    assert down_client.post("/v1/breakers/x:open").status_code == 503

"""A running task's lease in GET /v1/tasks/{id}, and GET /v1/leases for the workers page."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from starlette.testclient import TestClient

from hexq.core.auth import Scope, entry, new_secret
from hexq.core.clock import FakeClock
from hexq.functions.bootstrap import Container

ClientFactory = Callable[..., TestClient]


def run(container: Container, n: int = 1, lease: float = 30.0, worker: str = "w1") -> None:
    asyncio.run(container.backend.claim(["default"], n, lease_seconds=lease, worker_id=worker))


def test_a_running_task_shows_its_lease_and_a_waiting_one_none(client: TestClient, container: Container,
                                                                clock: FakeClock) -> None:
    running = client.post("/v1/tasks", json={"type": "echo"}).json()["id"]
    run(container)
    waiting = client.post("/v1/tasks", json={"type": "echo"}).json()["id"]
    started = clock.now()
    clock.advance(12)

    lease = client.get(f"/v1/tasks/{running}").json()["lease"]

    assert lease["worker_id"] == "w1" and lease["task_id"] == running and lease["token"] >= 1
    assert lease["expires_at"] == started + 30 and lease["seconds_left"] == 18
    assert lease["last_heartbeat"] == started and lease["lease_seconds"] == 30
    assert "lease" not in client.get(f"/v1/tasks/{waiting}").json()


def test_last_heartbeat_follows_the_expiry_a_heartbeat_pushed(client: TestClient, container: Container,
                                                               clock: FakeClock) -> None:
    task_id = client.post("/v1/tasks", json={"type": "echo"}).json()["id"]
    [held] = asyncio.run(container.backend.claim(["default"], 1, lease_seconds=30, worker_id="w1"))
    clock.advance(10)
    asyncio.run(container.backend.extend([held], 30))
    clock.advance(5)

    lease = client.get(f"/v1/tasks/{task_id}").json()["lease"]

    assert lease["last_heartbeat"] == clock.now() - 5 and lease["seconds_left"] == 25


def test_leases_near_expiry(client: TestClient, container: Container, clock: FakeClock) -> None:
    first = client.post("/v1/tasks", json={"type": "echo"}).json()["id"]
    run(container, lease=5)
    second = client.post("/v1/tasks", json={"type": "echo"}).json()["id"]
    run(container, lease=300, worker="w2")

    near = client.get("/v1/leases?within=10").json()
    every = client.get("/v1/leases").json()

    assert [lease["task_id"] for lease in near["leases"]] == [first]
    assert [lease["task_id"] for lease in every["leases"]] == [first, second]
    assert every["now"] == clock.now() and every["lease_seconds"] == 30
    clock.advance(6)  # expired, not yet taken back: still listed, with time below zero
    assert client.get("/v1/leases?within=0").json()["leases"][0]["seconds_left"] == -1


def test_bad_parameters_are_422(client: TestClient) -> None:
    for query in ("within=-1", "within=nan", "within=1e9", "limit=0", "limit=501", "limit=x", "limit=²"):
        response = client.get(f"/v1/leases?{query}")
        assert response.status_code == 422, query
        assert response.json()["details"]["field"] in {"within", "limit"}


def test_a_tenant_sees_only_its_own_leases(make_client: ClientFactory,
                                           make_container: Callable[..., Container]) -> None:
    secrets = {"acme": new_secret(), "globex": new_secret()}
    keys = ",".join(entry(name, name, [Scope.SUBMIT, Scope.READ], secret) for name, secret in secrets.items())
    container = make_container(api_keys=keys)
    client = make_client(container)
    ids = {name: client.post("/v1/tasks", json={"type": "echo"}, headers={"X-API-Key": secret}).json()["id"]
           for name, secret in secrets.items()}
    run(container, 2)

    seen = client.get("/v1/leases", headers={"X-API-Key": secrets["acme"]}).json()["leases"]

    assert [lease["task_id"] for lease in seen] == [ids["acme"]]
    assert client.get(f"/v1/tasks/{ids['globex']}", headers={"X-API-Key": secrets["acme"]}).status_code == 404

"""GET /v1/tasks/{id}?wait=S: the long poll the HTTP client waits with. Bounded (0 < S <= Limits.max_wait,
else 422), answers as soon as the task finishes, and keeps tenants apart (404) like a plain GET."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from hexq.core.auth import Scope, entry, new_secret
from hexq.core.services import Limits
from hexq.functions.api import create_app
from hexq.functions.bootstrap import Container

MAX_WAIT = Limits().max_wait


@pytest.fixture
async def api(container: Container) -> AsyncIterator[httpx.AsyncClient]:
    """The app on the test's own loop, so a worker invocation can run beside a pending long poll."""
    transport = httpx.ASGITransport(app=create_app(container))
    async with httpx.AsyncClient(transport=transport, base_url="http://hexq") as http:
        yield http


def _submit(client: TestClient, **body: Any) -> str:
    response = client.post("/v1/tasks", json={"type": "echo", **body})
    assert response.status_code == 202
    return str(response.json()["id"])


@pytest.mark.parametrize("wait", ["0", "-1", str(MAX_WAIT + 0.001), "1e400", "nan", "inf", "soon", "0x10"])
def test_a_wait_out_of_its_bounds_is_422(client: TestClient, wait: str) -> None:
    task_id = _submit(client)

    response = client.get(f"/v1/tasks/{task_id}", params={"wait": wait})

    assert response.status_code == 422
    assert response.json()["error"] == "validation_error" and response.json()["details"] == {"field": "wait"}


def test_an_empty_wait_is_no_wait(client: TestClient) -> None:
    task_id = _submit(client)

    response = client.get(f"/v1/tasks/{task_id}?wait=")

    assert response.status_code == 200 and response.json()["status"] == "queued"


def test_the_longest_wait_is_accepted_and_a_finished_task_answers_at_once(client: TestClient,
                                                                        container: Container) -> None:
    task_id = _submit(client, payload={"a": 1})
    asyncio.run(container.invocation("w").run())

    response = client.get(f"/v1/tasks/{task_id}", params={"wait": str(MAX_WAIT)})

    assert response.status_code == 200 and response.json()["result"] == {"a": 1}


async def test_a_long_poll_answers_as_soon_as_the_task_finishes(api: httpx.AsyncClient, container: Container) -> None:
    task_id = (await api.post("/v1/tasks", json={"type": "echo", "payload": {"a": 1}})).json()["id"]
    poll = asyncio.create_task(api.get(f"/v1/tasks/{task_id}", params={"wait": str(MAX_WAIT)}))
    await asyncio.sleep(0.05)
    assert not poll.done()  # waiting for the task, which nobody runs yet

    await container.invocation("w").run()

    response = await asyncio.wait_for(poll, MAX_WAIT / 2)  # well before its wait would have run out
    assert response.status_code == 200
    assert response.json()["status"] == "succeeded" and response.json()["result"] == {"a": 1}


async def test_a_long_poll_that_runs_out_answers_with_the_task_as_it_is(api: httpx.AsyncClient) -> None:
    task_id = (await api.post("/v1/tasks", json={"type": "echo"})).json()["id"]

    response = await api.get(f"/v1/tasks/{task_id}", params={"wait": "0.1"})

    assert response.status_code == 200 and response.json()["status"] == "queued"


def test_an_unknown_task_is_404_at_once_with_a_wait(client: TestClient) -> None:
    response = client.get("/v1/tasks/nope", params={"wait": str(MAX_WAIT)})

    assert response.status_code == 404 and response.json()["error"] == "not_found"


def test_another_tenant_s_task_is_404_with_a_wait(make_client: Callable[..., TestClient],
                                                 make_container: Callable[..., Container]) -> None:
    secrets = {tenant: new_secret() for tenant in ("acme", "globex")}
    keys = ",".join(entry(f"{tenant}-app", tenant, [Scope.SUBMIT, Scope.READ], secret)
                    for tenant, secret in secrets.items())
    client = make_client(make_container(api_keys=keys))
    acme, globex = ({"Authorization": f"Bearer {secrets[tenant]}"} for tenant in ("acme", "globex"))
    task_id = client.post("/v1/tasks", json={"type": "echo"}, headers=acme).json()["id"]

    theirs = client.get(f"/v1/tasks/{task_id}", params={"wait": str(MAX_WAIT)}, headers=globex)
    ours = client.get(f"/v1/tasks/{task_id}", params={"wait": "0.05"}, headers=acme)
    anonymous = client.get(f"/v1/tasks/{task_id}", params={"wait": "0.05"})

    assert theirs.status_code == 404 and theirs.json()["error"] == "not_found"  # as for an id nobody has
    assert ours.status_code == 200 and ours.json()["status"] == "queued"
    assert anonymous.status_code == 401


def test_the_openapi_document_states_the_wait_and_its_bounds(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/v1/tasks/{id}"]["get"]

    [wait] = [p for p in operation["parameters"] if p["name"] == "wait"]
    assert wait["in"] == "query" and not wait["required"]
    assert wait["schema"] == {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_WAIT}
    assert {"200", "404", "422"} <= set(operation["responses"])

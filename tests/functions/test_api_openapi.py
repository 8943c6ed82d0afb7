"""The OpenAPI document: valid OpenAPI 3.1, one entry per route and method, and true to real responses."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from starlette.routing import Route
from starlette.testclient import TestClient

from hexq.functions.api import routes
from hexq.functions.bootstrap import Container

openapi_spec_validator = pytest.importorskip("openapi_spec_validator")
openapi_schema_validator = pytest.importorskip("openapi_schema_validator")


@pytest.fixture
def doc(client: TestClient) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


def test_the_document_is_valid_openapi_3_1(doc: dict[str, Any]) -> None:
    openapi_spec_validator.validate(doc)
    assert doc["openapi"].startswith("3.1")


def test_the_document_describes_exactly_the_app_s_routes(doc: dict[str, Any]) -> None:
    served = set()
    for route in routes():
        assert isinstance(route, Route) and route.methods
        template = re.sub(r"{(\w+):\w+}", r"{\1}", route.path)  # {id:task_id} -> {id}
        served |= {(template, method.lower()) for method in route.methods if method != "HEAD"}

    documented = {(path, method) for path, item in doc["paths"].items() for method in item}

    assert documented == served


def test_every_operation_documents_its_parameters_and_errors(doc: dict[str, Any]) -> None:
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            in_path = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert in_path == set(re.findall(r"{(\w+)}", path)), (path, method)
            bodiless = path.endswith(("}:cancel", ":pause", ":resume", ":open", ":close"))  # the path says it all
            assert ("requestBody" in operation) == (method in {"post", "put"} and not bodiless)
            if path.startswith("/v1/"):
                assert "503" in operation["responses"], (path, method)
            if "requestBody" in operation:
                assert {"400", "413", "422"} <= set(operation["responses"]), (path, method)


def response_spec(doc: dict[str, Any], template: str, method: str, status: int) -> dict[str, Any]:
    spec: dict[str, Any] = doc["paths"][template][method.lower()]["responses"][str(status)]
    if "$ref" in spec:
        spec = doc["components"]["responses"][spec["$ref"].rsplit("/", 1)[1]]
    return spec


def check(doc: dict[str, Any], template: str, response: Any) -> None:
    """The response's status is documented for its operation, and its headers and body match."""
    spec = response_spec(doc, template, response.request.method, response.status_code)
    for header in spec.get("headers", {}):
        assert header.lower() in response.headers, (template, header)
    if "content" not in spec:
        assert response.content == b""
        return
    schema = {**spec["content"]["application/json"]["schema"], "components": doc["components"]}
    openapi_schema_validator.validate(response.json(), schema, cls=openapi_schema_validator.OAS31Validator)


def test_real_responses_match_the_document(doc: dict[str, Any], client: TestClient, down_client: TestClient,
                                           container: Container) -> None:
    submitted = client.post("/v1/tasks", json={"type": "echo", "payload": {"a": 1}, "idempotency_key": "k"})
    task_id = submitted.json()["id"]
    dead = client.post("/v1/tasks", json={"type": "boom", "max_attempts": 1}).json()["id"]
    asyncio.run(container.invocation("w").run())
    running = client.post("/v1/tasks", json={"type": "echo"}).json()["id"]
    asyncio.run(container.backend.claim(["default"], 1, lease_seconds=30, worker_id="w"))
    cases = [
        ("/v1/tasks/{id}", client.get(f"/v1/tasks/{running}")),
        ("/v1/leases", client.get("/v1/leases?within=60")),
        ("/v1/leases", client.get("/v1/leases?within=-1")),
        ("/v1/tasks", submitted),
        ("/v1/tasks", client.post("/v1/tasks", json={"type": "echo", "payload": {"a": 1}, "idempotency_key": "k"})),
        ("/v1/tasks", client.post("/v1/tasks", json={"type": "echo", "priority": "urgent"})),
        ("/v1/tasks", client.post("/v1/tasks", content=b"{")),
        ("/v1/tasks", client.post("/v1/tasks", content=b" " * 300_000)),
        ("/v1/tasks", client.post("/v1/tasks", json={"type": "nope"})),
        ("/v1/tasks", client.get("/v1/tasks?limit=1")),
        ("/v1/tasks", client.get("/v1/tasks?status=nope")),
        ("/v1/tasks:bulk", client.post("/v1/tasks:bulk", json={"tasks": [{"type": "echo"}, {"type": "echo"}]})),
        ("/v1/tasks:bulk", client.post("/v1/tasks:bulk", json={"tasks": [{"type": 1}]})),
        ("/v1/tasks/{id}", client.get(f"/v1/tasks/{task_id}")),
        ("/v1/tasks/{id}", client.get("/v1/tasks/nope")),
        ("/v1/tasks/{id}:cancel", client.post(f"/v1/tasks/{task_id}:cancel")),
        ("/v1/tasks/{id}:cancel", client.post(f"/v1/tasks/{dead}:cancel")),
        ("/v1/stats", client.get("/v1/stats")),
        ("/v1/dead", client.get("/v1/dead")),
        ("/v1/dead:replay", client.post("/v1/dead:replay", json={"ids": [dead]})),
        ("/v1/schedules/{name}", client.put("/v1/schedules/s", json={"spec": "@every 1m", "type": "echo"})),
        ("/v1/schedules/{name}", client.put("/v1/schedules/s", json={"spec": "never", "type": "echo"})),
        ("/v1/schedules/{name}", client.get("/v1/schedules/s")),
        ("/v1/schedules", client.get("/v1/schedules")),
        ("/v1/schedules/{name}", client.delete("/v1/schedules/s")),
        ("/v1/schedules/{name}", client.delete("/v1/schedules/s")),
        ("/", client.get("/")),
        ("/healthz", client.get("/healthz")),
        ("/readyz", client.get("/readyz")),
        ("/readyz", down_client.get("/readyz")),
        ("/v1/stats", down_client.get("/v1/stats")),
        ("/openapi.json", client.get("/openapi.json")),
    ]
    for template, response in cases:
        check(doc, template, response)
    assert cases[0][1].json()["lease"]["worker_id"] == "w" and cases[1][1].json()["leases"]
    assert {r.status_code for _, r in cases} == {200, 202, 204, 400, 404, 409, 413, 422, 503}

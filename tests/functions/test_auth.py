"""API keys over HTTP (RELIABILITY T21): 401 for no/wrong/revoked keys, 403 for a missing scope, 404 across tenants."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest
from starlette.routing import Route
from starlette.testclient import TestClient

from hexq.core.auth import Scope, entry, new_secret
from hexq.functions.api import routes
from hexq.functions.bootstrap import Container

ClientFactory = Callable[..., TestClient]

# name -> (tenant, scopes)
KEYS: dict[str, tuple[str, list[Scope]]] = {
    "acme-app": ("acme", [Scope.SUBMIT, Scope.READ]),
    "acme-viewer": ("acme", [Scope.READ]),
    "acme-writer": ("acme", [Scope.SUBMIT]),
    "acme-admin": ("acme", [Scope.ADMIN]),
    "globex-app": ("globex", [Scope.SUBMIT, Scope.READ]),
    "globex-admin": ("globex", [Scope.ADMIN]),
    "ops": ("*", [Scope.ADMIN]),
}
SECRETS = {name: new_secret() for name in KEYS}
ENTRIES = {name: entry(name, tenant, scopes, SECRETS[name]) for name, (tenant, scopes) in KEYS.items()}
V1 = sorted((method, route.path) for route in routes() if isinstance(route, Route) and route.methods
            and route.path.startswith("/v1/") for method in route.methods if method != "HEAD")


def as_(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {SECRETS[name]}"}


@pytest.fixture
def keyed_container(make_container: Callable[..., Container]) -> Container:
    return make_container(api_keys=",".join(ENTRIES.values()))


@pytest.fixture
def keyed(make_client: ClientFactory, keyed_container: Container) -> TestClient:
    return make_client(keyed_container)


def submit(client: TestClient, key: str, **body: Any) -> dict[str, Any]:
    response = client.post("/v1/tasks", json={"type": "echo", **body}, headers=as_(key))
    assert response.status_code == 202, response.json()
    return response.json()  # type: ignore[no-any-return]


def ids(response: Any) -> set[str]:
    return {task["id"] for task in response.json()["tasks"]}


# -- 401 ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("method", "path"), V1)
def test_every_v1_endpoint_needs_a_key(keyed: TestClient, method: str, path: str) -> None:
    url = path.replace("{id:task_id}", "some-id").replace("{name}", "s")
    response = keyed.request(method, url, json={"type": "echo"})

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="hexq"'
    assert response.json()["error"] == "unauthorized"


def test_missing_wrong_malformed_and_revoked_keys_get_one_identical_401(
        keyed: TestClient, make_client: ClientFactory, make_container: Callable[..., Container]) -> None:
    revoked = make_client(make_container(api_keys=ENTRIES["globex-app"]))  # acme's keys were removed
    attempts = [
        keyed.post("/v1/tasks", json={"type": "echo"}),
        keyed.post("/v1/tasks", json={"type": "echo"}, headers={"Authorization": f"Bearer {new_secret()}"}),
        keyed.post("/v1/tasks", json={"type": "echo"}, headers={"X-API-Key": SECRETS["acme-app"] + "x"}),
        keyed.post("/v1/tasks", json={"type": "echo"}, headers={"Authorization": f"Basic {SECRETS['acme-app']}"}),
        keyed.post("/v1/tasks", json={"type": "echo"}, headers={"Authorization": ENTRIES["acme-app"]}),
        keyed.post(f"/v1/tasks?api_key={SECRETS['acme-app']}", json={"type": "echo"}),  # never from the URL
        revoked.post("/v1/tasks", json={"type": "echo"}, headers=as_("acme-app")),
    ]
    assert {(r.status_code, r.content, r.headers["www-authenticate"]) for r in attempts} == {
        (401, attempts[0].content, 'Bearer realm="hexq"')}
    assert all(SECRETS["acme-app"] not in r.text for r in attempts)
    assert keyed.get("/v1/stats", headers=as_("ops")).json()["backlog"] == 0  # nothing was enqueued


def test_both_headers_carry_a_key(keyed: TestClient) -> None:
    assert keyed.get("/v1/tasks", headers={"Authorization": f"Bearer {SECRETS['acme-app']}"}).status_code == 200
    assert keyed.get("/v1/tasks", headers={"X-API-Key": SECRETS["acme-app"]}).status_code == 200


def test_open_endpoints_stay_open(keyed: TestClient) -> None:
    for path in ["/", "/healthz", "/readyz", "/openapi.json"]:
        assert keyed.get(path).status_code == 200, path


def test_without_keys_the_api_stays_open_across_tenants(client: TestClient) -> None:
    task = client.post("/v1/tasks", json={"type": "echo"}).json()
    assert task["tenant"] == "default"
    assert client.get(f"/v1/tasks/{task['id']}").status_code == 200


# -- 403 ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("key", "method", "path", "scope"), [
    ("acme-viewer", "POST", "/v1/tasks", "submit"),
    ("acme-viewer", "POST", "/v1/tasks:bulk", "submit"),
    ("acme-viewer", "POST", "/v1/tasks/x:cancel", "submit"),
    ("acme-writer", "GET", "/v1/tasks", "read"),
    ("acme-writer", "GET", "/v1/tasks/x", "read"),
    ("acme-writer", "GET", "/v1/stats", "read"),
    ("acme-writer", "GET", "/v1/dead", "read"),
    ("acme-writer", "GET", "/v1/schedules", "read"),
    ("acme-app", "POST", "/v1/dead:replay", "admin"),
    ("acme-app", "PUT", "/v1/schedules/s", "admin"),
    ("acme-app", "DELETE", "/v1/schedules/s", "admin"),
    ("acme-writer", "GET", "/v1/queues", "read"),
    ("acme-app", "POST", "/v1/queues/q:pause", "admin"),
    ("acme-app", "POST", "/v1/queues/q:resume", "admin"),
    ("acme-writer", "GET", "/v1/breakers", "read"),
    ("acme-app", "POST", "/v1/breakers/b:open", "admin"),
    ("acme-app", "POST", "/v1/breakers/b:close", "admin"),
])
def test_a_key_without_the_scope_gets_403(keyed: TestClient, key: str, method: str, path: str, scope: str) -> None:
    response = keyed.request(method, path, json={"type": "echo"}, headers=as_(key))

    assert response.status_code == 403
    assert response.json() == {"error": "forbidden", "message": f"this API key lacks the {scope!r} scope",
                               "details": {"scope": scope}}


def test_a_read_only_key_cannot_submit(keyed: TestClient) -> None:
    assert keyed.post("/v1/tasks", json={"type": "echo"}, headers=as_("acme-viewer")).status_code == 403
    assert keyed.get("/v1/tasks", headers=as_("acme-viewer")).json()["tasks"] == []


def test_admin_implies_submit_and_read(keyed: TestClient) -> None:
    task = submit(keyed, "acme-admin")
    assert keyed.get(f"/v1/tasks/{task['id']}", headers=as_("acme-admin")).status_code == 200


# -- tenants ------------------------------------------------------------------------------------------
def test_tasks_belong_to_the_key_s_tenant_and_other_tenants_get_404(keyed: TestClient) -> None:
    task = submit(keyed, "acme-app")
    assert task["tenant"] == "acme"

    theirs = keyed.get(f"/v1/tasks/{task['id']}", headers=as_("globex-app"))
    missing = keyed.get("/v1/tasks/no-such-task", headers=as_("globex-app"))
    assert (theirs.status_code, theirs.json()["error"]) == (missing.status_code, missing.json()["error"]) == (
        404, "not_found")
    cancel = keyed.post(f"/v1/tasks/{task['id']}:cancel", headers=as_("globex-app"))
    assert cancel.status_code == 404
    assert keyed.get(f"/v1/tasks/{task['id']}", headers=as_("acme-viewer")).json()["status"] == "queued"

    assert ids(keyed.get("/v1/tasks", headers=as_("globex-app"))) == set()
    assert ids(keyed.get("/v1/tasks", headers=as_("acme-viewer"))) == {task["id"]}
    assert ids(keyed.get("/v1/tasks", headers=as_("ops"))) == {task["id"]}  # tenant '*' sees every tenant

    assert keyed.post(f"/v1/tasks/{task['id']}:cancel", headers=as_("acme-writer")).json()["status"] == "cancelled"


def test_bulk_submits_belong_to_the_key_s_tenant(keyed: TestClient) -> None:
    response = keyed.post("/v1/tasks:bulk", json={"tasks": [{"type": "echo"}, {"type": "echo"}]},
                          headers=as_("globex-app"))
    assert response.status_code == 202
    assert {task["tenant"] for task in response.json()["tasks"]} == {"globex"}
    assert ids(keyed.get("/v1/tasks", headers=as_("acme-app"))) == set()


def test_idempotency_keys_are_per_tenant(keyed: TestClient) -> None:
    ours = submit(keyed, "acme-app", idempotency_key="order-1")
    theirs = submit(keyed, "globex-app", idempotency_key="order-1")
    again = keyed.post("/v1/tasks", json={"type": "echo", "idempotency_key": "order-1"}, headers=as_("acme-app"))

    assert ours["id"] != theirs["id"]
    assert (again.status_code, again.json()["id"]) == (200, ours["id"])


def test_an_operator_key_submits_as_the_default_tenant(keyed: TestClient) -> None:
    assert submit(keyed, "ops")["tenant"] == "default"


def test_dead_letters_are_per_tenant_and_admin_replays_them(keyed: TestClient, keyed_container: Container) -> None:
    dead = submit(keyed, "acme-app", type="boom", max_attempts=1)["id"]
    asyncio.run(keyed_container.invocation("w").run())

    assert ids(keyed.get("/v1/dead", headers=as_("acme-viewer"))) == {dead}
    assert ids(keyed.get("/v1/dead", headers=as_("globex-app"))) == set()
    assert keyed.post("/v1/dead:replay", json={"ids": [dead]}, headers=as_("globex-admin")).json() == {"replayed": []}

    replayed = keyed.post("/v1/dead:replay", json={"ids": [dead]}, headers=as_("acme-admin"))
    assert replayed.status_code == 200
    assert [task["id"] for task in replayed.json()["replayed"]] == [dead]


def test_schedules_are_per_tenant(keyed: TestClient) -> None:
    schedule = {"spec": "@every 1m", "type": "echo"}
    put = keyed.put("/v1/schedules/nightly", json=schedule, headers=as_("acme-admin"))
    assert (put.status_code, put.json()["tenant"]) == (200, "acme")

    assert keyed.get("/v1/schedules/nightly", headers=as_("acme-viewer")).status_code == 200
    assert keyed.get("/v1/schedules/nightly", headers=as_("globex-app")).status_code == 404
    assert keyed.get("/v1/schedules", headers=as_("globex-app")).json() == {"schedules": []}
    assert keyed.delete("/v1/schedules/nightly", headers=as_("globex-admin")).status_code == 404
    taken = keyed.put("/v1/schedules/nightly", json=schedule, headers=as_("globex-admin"))
    assert (taken.status_code, taken.json()["error"]) == (409, "name_taken")

    # an operator sees it, and replacing it keeps its tenant
    assert [s["name"] for s in keyed.get("/v1/schedules", headers=as_("ops")).json()["schedules"]] == ["nightly"]
    assert keyed.put("/v1/schedules/nightly", json=schedule, headers=as_("ops")).json()["tenant"] == "acme"
    assert keyed.delete("/v1/schedules/nightly", headers=as_("acme-admin")).status_code == 204


# -- secrets stay out of logs -------------------------------------------------------------------------
def test_keys_never_appear_in_logs(make_client: ClientFactory, keyed_container: Container,
                                   caplog: pytest.LogCaptureFixture) -> None:
    keyed = make_client(keyed_container, raise_server_exceptions=False)
    secret = SECRETS["acme-app"]
    with caplog.at_level(logging.DEBUG):
        submit(keyed, "acme-app")
        keyed.get("/v1/tasks", headers={"X-API-Key": secret})
        keyed.get("/v1/tasks", headers={"Authorization": f"Bearer {secret}x"})
        keyed.post("/v1/tasks", content=b"{", headers=as_("acme-app"))
        keyed.get("/v1/nope", headers=as_("acme-app"))
    assert caplog.records  # something was logged (the HTTP client's request lines at least)
    assert secret not in caplog.text
    assert secret not in repr(keyed_container.settings)


# -- the OpenAPI document -----------------------------------------------------------------------------
def test_every_protected_operation_documents_its_security_and_errors(keyed: TestClient) -> None:
    doc = keyed.get("/openapi.json").json()
    assert set(doc["components"]["securitySchemes"]) == {"bearerKey", "headerKey"}
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            protected = path.startswith("/v1/") or path == "/metrics"
            assert ("security" in operation) == protected, (path, method)
            # /v1/whoami admits any valid key whatever its scopes, so it has no 403 to answer
            refusals = {"401", "429"} if path == "/v1/whoami" else {"401", "403", "429"}
            assert refusals <= set(operation["responses"]) or not protected, (path, method)


def check(doc: dict[str, Any], template: str, response: Any) -> None:
    """The response's status is documented for its operation, with its headers, and the body is an Error."""
    validator = pytest.importorskip("openapi_schema_validator")
    spec = doc["paths"][template][response.request.method.lower()]["responses"][str(response.status_code)]
    spec = doc["components"]["responses"][spec["$ref"].rsplit("/", 1)[1]]
    for header in spec.get("headers", {}):
        assert header.lower() in response.headers, (template, header)
    schema = {**spec["content"]["application/json"]["schema"], "components": doc["components"]}
    validator.validate(response.json(), schema, cls=validator.OAS31Validator)


def test_401_403_429_and_409_answers_match_the_document(keyed: TestClient, make_client: ClientFactory,
                                                        make_container: Callable[..., Container]) -> None:
    doc = keyed.get("/openapi.json").json()
    limited = make_client(make_container(api_keys=ENTRIES["acme-app"], rate="1/h", burst=1))
    limited.get("/v1/stats", headers=as_("acme-app"))
    capped = make_client(make_container(api_keys=ENTRIES["acme-app"], max_queued_per_tenant=1))
    capped.post("/v1/tasks", json={"type": "echo"}, headers=as_("acme-app"))
    keyed.put("/v1/schedules/s", json={"spec": "@every 1m", "type": "echo"}, headers=as_("acme-admin"))
    cases = [
        ("/v1/tasks", keyed.post("/v1/tasks", json={"type": "echo"})),
        ("/v1/tasks", keyed.post("/v1/tasks", json={"type": "echo"}, headers=as_("acme-viewer"))),
        ("/v1/stats", limited.get("/v1/stats", headers=as_("acme-app"))),
        ("/v1/tasks", capped.post("/v1/tasks", json={"type": "echo"}, headers=as_("acme-app"))),
        ("/v1/schedules/{name}", keyed.put("/v1/schedules/s", json={"spec": "@every 1m", "type": "echo"},
                                           headers=as_("globex-admin"))),
    ]
    for template, response in cases:
        check(doc, template, response)
    assert [r.status_code for _, r in cases] == [401, 403, 429, 429, 409]
    assert [r.json()["error"] for _, r in cases][2:4] == ["rate_limited", "queue_full"]

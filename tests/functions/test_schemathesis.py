"""Schemathesis against the app's own OpenAPI document: generated requests for every operation
must never get a 5xx, every response must match the documented status codes, headers and
schemas, and schema-invalid requests must be refused. Bodies are also pushed to the edges the
schema does not bound (huge numbers, schedules that never fire again), and whatever the API accepts
must read back with a 200."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis import checks

from hexq.core.auth import Scope, entry, new_secret
from hexq.core.registry import Registry
from hexq.functions.api import create_app
from hexq.functions.bootstrap import bootstrap
from hexq.functions.settings import Settings


def _measured(payload: dict[str, Any]) -> None:
    """A validator doing what validators do with a client's number (it raised OverflowError into a 500)."""
    n = payload.get("n", 0)
    if isinstance(n, int | float) and not isinstance(n, bool):
        datetime.fromtimestamp(float(n), UTC)


def _app() -> Any:
    registry = Registry()

    @registry.task("echo")
    async def echo(payload: dict[str, Any]) -> dict[str, Any]:
        return payload

    registry.task("measured", validate=_measured)(echo)

    # With keys configured, as the document's security section says; rate "0" so the generated
    # flood is never throttled into 429s that would hide what it is looking for.
    keys = entry("schemathesis", "acme", [Scope.ADMIN], SECRET)
    settings = Settings(backend_url="memory://", task_modules=(), api_keys=keys, rate="0")
    return create_app(bootstrap(settings, registry=registry))


SECRET = new_secret()
HEADERS = {"X-API-Key": SECRET}


# A schema-invalid body may also be over the body cap (a bulk past maxItems, say): 413 refuses it too.
_REFUSALS = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]
_CONFIG = schemathesis.config.SchemathesisConfig.from_dict(
    {"checks": {"negative_data_rejection": {"expected-statuses": _REFUSALS}}})
schema = schemathesis.openapi.from_asgi("/openapi.json", _app(), config=_CONFIG)

# The schema leaves these unbounded (or bounded only in prose), so schemathesis alone rarely reaches them.
HUGE = st.sampled_from([10**400, -(10**400), 2**1024, 1e308, 5e-324, 1e15]) | st.integers(-(10**500), 10**500)
EDGE_SPECS = (st.sampled_from(["@every 99999999999999999d", "@every " + "9" * 400 + "d", "@every 0.0001ms",
                               "@every " + "9999999d" * 500, "0 0 31 2 *", "0 0 1 1 * 0 2020", "*/0 * * * *"])
              | st.integers(1, 10**30).map("@every {}d".format))


def _edge_bodies(path: str, body: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    if path == "/v1/tasks":
        return (HUGE.map(lambda n: {"type": "measured", "payload": {"n": n}})
                | st.tuples(st.sampled_from(["delay", "timeout", "run_at", "max_attempts", "priority"]), HUGE)
                .map(lambda edge: {"type": "echo", edge[0]: edge[1]}))
    if path == "/v1/schedules/{name}":
        return EDGE_SPECS.map(lambda spec: {**body, "type": "echo", "spec": spec})
    return st.nothing()


@schema.hook
def flatmap_case(context: Any, case: Any) -> Any:
    """Half of the schema-valid bodies for a submit or a schedule are swapped for an edge case; schemathesis
    checks the swapped body against the schema again, so each is expected to pass or be refused as it is."""
    if case.meta is None or case.meta.generation.mode.is_negative or not isinstance(case.body, dict):
        return st.just(case)

    def swapped(body: dict[str, Any]) -> Any:
        case.body = body
        return case

    return st.just(case) | _edge_bodies(case.operation.path, case.body).map(swapped)


def _read_back(case: Any, response: Any) -> None:
    """After an accepted write, the reads that show what it stored answer 200 and match the document."""
    if response.status_code >= 300:
        return
    reads = []
    if case.method == "PUT" and case.operation.path == "/v1/schedules/{name}":
        reads = [schema["/v1/schedules"]["GET"].Case(),
                 schema["/v1/schedules/{name}"]["GET"].Case(path_parameters=case.path_parameters)]
    elif case.method == "POST" and case.operation.path == "/v1/tasks":
        reads = [schema["/v1/tasks"]["GET"].Case(),
                 schema["/v1/tasks/{id}"]["GET"].Case(path_parameters={"id": response.json()["id"]})]
    for read in reads:
        assert read.call_and_validate(headers=HEADERS).status_code == 200


@pytest.mark.reliability
@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_api_keeps_its_documented_contract(case: Any) -> None:
    # Schema-valid is not always acceptable here: a task type must be registered and delay and
    # run_at exclude each other, which the document states in prose, not in the schema.
    response = case.call_and_validate(headers=HEADERS, excluded_checks=[checks.positive_data_acceptance])
    _read_back(case, response)

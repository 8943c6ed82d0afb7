"""Whatever a client sends, the answer is never a 5xx (a 500 would also raise into the test client)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=16)
FIELDS = ("type", "payload", "priority", "queue", "delay", "run_at", "max_attempts", "timeout", "idempotency_key",
          "attempts", "status", "tasks", "ids", "spec", "enabled")
NEAR_VALID = {
    "type": st.sampled_from(["echo", "boom", "nope", ""]) | JSON_VALUES,
    "payload": st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=3) | JSON_VALUES,
    "priority": st.sampled_from(["low", "HIGH", "urgent", True, 0, 3, 4, -1]) | JSON_VALUES,
    "delay": st.integers() | st.floats(allow_nan=False, allow_infinity=False) | JSON_VALUES,
    "run_at": st.sampled_from(["2023-11-14T23:13:20Z", "2023-13-01", "", "9999-12-31T23:59:59-23:59"]) | JSON_VALUES,
    "max_attempts": st.integers() | JSON_VALUES,
}
# Submit-like objects: mostly the right field names with plausible or arbitrary values.
SUBMITS = st.fixed_dictionaries({}, optional={**NEAR_VALID, **{f: JSON_VALUES for f in FIELDS if f not in NEAR_VALID}})
JSON_TOKENS = st.text(alphabet='{}[]":,0123456789.eE+- \\utrflnsaNIy\ud800', max_size=64)
BODIES = (JSON_VALUES.map(json.dumps) | SUBMITS.map(json.dumps)
          | st.lists(SUBMITS, max_size=3).map(lambda tasks: json.dumps({"tasks": tasks}))
          | JSON_TOKENS | st.binary(max_size=256))
ENDPOINTS = st.sampled_from([("POST", "/v1/tasks"), ("POST", "/v1/tasks"), ("POST", "/v1/tasks:bulk"),
                             ("POST", "/v1/dead:replay"), ("PUT", "/v1/schedules/fuzz")])
FUZZ = settings(max_examples=200, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def encode(body: str | bytes) -> bytes:
    return body if isinstance(body, bytes) else body.encode("utf-8", "surrogatepass")


@FUZZ
@given(endpoint=ENDPOINTS, body=BODIES)
def test_no_body_makes_a_5xx(client: TestClient, endpoint: tuple[str, str], body: str | bytes) -> None:
    method, path = endpoint
    response = client.request(method, path, content=encode(body))

    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert set(response.json()) == {"error", "message", "details"}


@FUZZ
@given(params=st.dictionaries(st.sampled_from(["status", "type", "queue", "limit", "cursor"]), st.text(max_size=12)),
       path=st.sampled_from(["/v1/tasks", "/v1/dead"]))
def test_no_query_makes_a_5xx(client: TestClient, params: dict[str, Any], path: str) -> None:
    assert client.get(path, params=params).status_code < 500

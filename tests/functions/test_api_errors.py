"""Every error status the API answers, each with its JSON body; and nothing enqueued by a refused request."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, MutableMapping
from datetime import UTC, datetime
from typing import Any

import pytest
from starlette.testclient import TestClient

from hexq.core.clock import FakeClock
from hexq.functions.api import create_app
from hexq.functions.bootstrap import Container

NOW = FakeClock().now()
DAY = 86_400.0


def stored(client: TestClient) -> int:
    return sum(client.get("/v1/stats").json()["by_status"].values())


def assert_error(response: Any, status: int, code: str, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert set(body) == {"error", "message", "details"}
    assert body["error"] == code and isinstance(body["message"], str) and body["message"]
    if field is not None:
        assert body["details"] == {"field": field}
    return body


# -- 400 bad_json ------------------------------------------------------------------------------
BAD_JSON = {
    "truncated": b'{"type": "echo", "payload": {',
    "invalid utf-8": b'{"type": "echo", "payload": {"s": "\xff\xfe"}}',
    "latin-1": '{"type": "échø"}'.encode("latin-1"),
    "NaN": b'{"type": "echo", "payload": {"x": NaN}}',
    "Infinity": b'{"type": "echo", "delay": Infinity}',
    "-Infinity": b'{"type": "echo", "run_at": -Infinity}',
    "float overflow": b'{"type": "echo", "delay": 1e999}',
    "integer with 5000 digits": b'{"type": "echo", "max_attempts": ' + b"9" * 5000 + b"}",
    "array": b'[{"type": "echo"}]',
    "string": b'"echo"',
    "number": b"42",
    "null": b"null",
    "empty": b"",
    "whitespace": b" \r\n ",
    "byte order mark": b'\xef\xbb\xbf{"type": "echo"}',
    "unpaired surrogate": b'{"type": "echo", "payload": {"s": "\\ud800"}}',
    "10,000 nested arrays": b"[" * 10_000 + b"]" * 10_000,
    "10,000 nested objects": b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
    "101 nested payload levels": b'{"type": "echo", "payload": ' + b'{"a":' * 100 + b"1" + b"}" * 101,
    "trailing garbage": b'{"type": "echo"} {}',
}


@pytest.mark.parametrize("body", BAD_JSON.values(), ids=BAD_JSON.keys())
def test_a_body_that_is_not_one_json_object_is_400(client: TestClient, body: bytes) -> None:
    assert_error(client.post("/v1/tasks", content=body), 400, "bad_json")
    assert stored(client) == 0


@pytest.mark.parametrize(("method", "path"), [("POST", "/v1/tasks:bulk"), ("POST", "/v1/dead:replay"),
                                              ("PUT", "/v1/schedules/nightly")])
@pytest.mark.parametrize("body", [BAD_JSON["truncated"], BAD_JSON["array"], BAD_JSON["10,000 nested arrays"]],
                         ids=["truncated", "array", "deep"])
def test_every_body_endpoint_answers_bad_json(client: TestClient, method: str, path: str, body: bytes) -> None:
    assert_error(client.request(method, path, content=body), 400, "bad_json")


def test_nesting_just_under_the_limit_is_accepted(client: TestClient) -> None:
    body = b'{"type": "echo", "payload": ' + b'{"a":' * 98 + b"1" + b"}" * 99

    assert client.post("/v1/tasks", content=body).status_code == 202


def test_any_content_type_is_accepted_if_the_body_is_json(client: TestClient) -> None:
    response = client.post("/v1/tasks", content=b'{"type": "echo"}', headers={"content-type": "text/plain"})

    assert response.status_code == 202


# -- 413 body_too_large ------------------------------------------------------------------------
def big_body() -> bytes:
    return b'{"type": "echo", "payload": {"blob": "' + b"x" * (300 * 1024) + b'"}}'


def test_a_body_over_the_cap_is_413_by_content_length(client: TestClient) -> None:
    body = assert_error(client.post("/v1/tasks", content=big_body()), 413, "body_too_large")

    assert body["details"] == {"limit": 256 * 1024}
    assert stored(client) == 0


def test_a_chunked_body_over_the_cap_is_413_while_streaming(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        data = big_body()
        for start in range(0, len(data), 16 * 1024):
            yield data[start:start + 16 * 1024]

    response = client.post("/v1/tasks", content=chunks())

    assert "content-length" not in response.request.headers
    assert_error(response, 413, "body_too_large")
    assert stored(client) == 0


def test_the_cap_comes_from_settings(make_client: Callable[..., TestClient],
                                     make_container: Callable[..., Container]) -> None:
    client = make_client(make_container(body_limit=100))

    assert client.post("/v1/tasks", json={"type": "echo", "payload": {"s": "x" * 50}}).status_code == 202
    assert_error(client.post("/v1/tasks", json={"type": "echo", "payload": {"s": "x" * 100}}), 413, "body_too_large")


async def call_raw(container: Container, headers: list[tuple[bytes, bytes]]) -> tuple[int, int]:
    """POST an endless stream of 64 KiB chunks straight to the ASGI app: (status, chunks it read)."""
    app = create_app(container)
    reads = 0
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": b" " * 65_536, "more_body": True}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/tasks", "raw_path": b"/v1/tasks", "query_string": b"", "root_path": "",
             "headers": headers, "client": ("127.0.0.1", 1), "server": ("testserver", 80)}
    await app(scope, receive, send)
    return sent[0]["status"], reads


@pytest.mark.parametrize("declared", [b"10", b"nonsense", None], ids=["lying", "malformed", "absent"])
async def test_reading_stops_as_soon_as_the_cap_is_passed(container: Container, declared: bytes | None) -> None:
    headers = [] if declared is None else [(b"content-length", declared)]

    status, reads = await call_raw(container, headers)

    assert (status, reads) == (413, 5)  # 4 chunks fill the 256 KiB cap exactly; the 5th passes it


async def test_a_declared_length_over_the_cap_is_refused_before_reading(container: Container) -> None:
    assert await call_raw(container, [(b"content-length", b"300000")]) == (413, 0)


# -- 422 validation_error / unknown_task_type --------------------------------------------------
INVALID: list[tuple[dict[str, Any], str, str]] = [
    ({"payload": "text"}, "validation_error", "payload"),
    ({"payload": [1, 2]}, "validation_error", "payload"),
    ({"priority": "urgent"}, "validation_error", "priority"),
    ({"priority": 4}, "validation_error", "priority"),
    ({"priority": 1.5}, "validation_error", "priority"),
    ({"priority": [2]}, "validation_error", "priority"),
    ({"max_attempts": 0}, "validation_error", "max_attempts"),
    ({"max_attempts": 10**9}, "validation_error", "max_attempts"),
    ({"max_attempts": 2.0}, "validation_error", "max_attempts"),
    ({"max_attempts": "3"}, "validation_error", "max_attempts"),
    ({"max_attempts": True}, "validation_error", "max_attempts"),
    ({"delay": -1}, "validation_error", "delay"),
    ({"delay": "10"}, "validation_error", "delay"),
    ({"delay": False}, "validation_error", "delay"),
    ({"delay": 10**400}, "validation_error", "delay"),
    ({"delay": 400 * DAY}, "validation_error", "delay"),
    ({"run_at": NOW + 400 * DAY}, "validation_error", "run_at"),
    ({"run_at": "2099-01-01T00:00:00Z"}, "validation_error", "run_at"),
    ({"run_at": -5}, "validation_error", "run_at"),
    ({"run_at": "tomorrow"}, "validation_error", "run_at"),
    ({"run_at": "0001-01-01T00:00:00+14:00"}, "validation_error", "run_at"),
    ({"run_at": {"at": 1}}, "validation_error", "run_at"),
    ({"delay": 5, "run_at": NOW + 10}, "validation_error", "delay"),
    ({"timeout": 0}, "validation_error", "timeout"),
    ({"timeout": 10**6}, "validation_error", "timeout"),
    ({"timeout": 10**400}, "validation_error", "timeout"),
    ({"queue": "no spaces"}, "validation_error", "queue"),
    ({"queue": 7}, "validation_error", "queue"),
    ({"idempotency_key": ""}, "validation_error", "idempotency_key"),
    ({"idempotency_key": "k" * 201}, "validation_error", "idempotency_key"),
    ({"idempotency_key": 5}, "validation_error", "idempotency_key"),
    ({"attempts": 2}, "validation_error", "attempts"),
    ({"status": "succeeded"}, "validation_error", "status"),
    ({"id": "mine"}, "validation_error", "id"),
    ({"tenant": "other"}, "validation_error", "tenant"),
    ({"created_at": 0}, "validation_error", "created_at"),
    ({"type": None}, "validation_error", "type"),
    ({"type": 5}, "validation_error", "type"),
    ({"type": ["echo"]}, "validation_error", "type"),
    ({"type": {"name": "echo"}}, "validation_error", "type"),
    ({"type": "nope"}, "unknown_task_type", "type"),
]


@pytest.mark.parametrize(("fields", "code", "field"), INVALID, ids=[f"{f}" for _, _, f in INVALID])
def test_a_body_breaking_the_schema_is_422_naming_the_field(client: TestClient, fields: dict[str, Any], code: str,
                                                           field: str) -> None:
    assert_error(client.post("/v1/tasks", json={"type": "echo", **fields}), 422, code, field)
    assert stored(client) == 0


def test_a_missing_type_is_422(client: TestClient) -> None:
    assert_error(client.post("/v1/tasks", json={"payload": {}}), 422, "validation_error", "type")


@pytest.mark.parametrize("key", ["", "k" * 201])
def test_a_bad_idempotency_key_header_is_422(client: TestClient, key: str) -> None:
    response = client.post("/v1/tasks", json={"type": "echo"}, headers={"Idempotency-Key": key})

    assert_error(response, 422, "validation_error", "idempotency_key")


def test_header_and_body_keys_that_differ_are_422(client: TestClient) -> None:
    response = client.post("/v1/tasks", json={"type": "echo", "idempotency_key": "a"}, headers={"Idempotency-Key": "b"})

    assert_error(response, 422, "validation_error", "idempotency_key")


def test_reusing_an_idempotency_key_for_a_different_task_is_422(client: TestClient) -> None:
    first = client.post("/v1/tasks", json={"type": "echo", "payload": {"a": 1}, "idempotency_key": "k"})
    assert first.status_code == 202

    response = client.post("/v1/tasks", json={"type": "echo", "payload": {"a": 2}, "idempotency_key": "k"})

    assert_error(response, 422, "idempotency_mismatch")
    assert stored(client) == 1


PAGING = [("limit=abc", "limit"), ("limit=0", "limit"), ("limit=501", "limit"), ("limit=" + "9" * 5000, "limit"),
          ("cursor=%C2%B2", "cursor"), ("cursor=" + "9" * 5000, "cursor")]


@pytest.mark.parametrize(("path", "query", "field"), [("/v1/tasks", "status=bogus", "status")]
                         + [(path, q, f) for path in ("/v1/tasks", "/v1/dead") for q, f in PAGING])
def test_bad_list_parameters_are_422(client: TestClient, path: str, query: str, field: str) -> None:
    assert_error(client.get(f"{path}?{query}"), 422, "validation_error", field)


# -- bulk: all or nothing, errors name the element ---------------------------------------------
@pytest.mark.parametrize(("body", "field"), [
    ({"tasks": [{"type": "echo"}, {"type": "echo", "priority": "urgent"}, {"type": "echo"}]}, "tasks[1].priority"),
    ({"tasks": [{"type": "echo"}, {"type": "echo"}, {"type": "echo"}, {"type": "echo", "attempts": 1}]},
     "tasks[3].attempts"),
    ({"tasks": [{"type": "echo"}, "echo"]}, "tasks[1]"),
    ({"tasks": [{"type": "echo", "payload": 3}]}, "tasks[0].payload"),
    ({"tasks": {"type": "echo"}}, "tasks"),
    ({"tasks": []}, "tasks"),
    ({"tasks": [{"type": "echo"}] * 1001}, "tasks"),
    ({}, "tasks"),
    ({"tasks": [{"type": "echo"}], "atomic": True}, "atomic"),
])
def test_a_bad_bulk_is_422_naming_the_element_and_enqueues_nothing(client: TestClient, body: dict[str, Any],
                                                                   field: str) -> None:
    assert_error(client.post("/v1/tasks:bulk", json=body), 422, "validation_error", field)
    assert stored(client) == 0


def test_a_bulk_element_the_service_refuses_enqueues_nothing(client: TestClient) -> None:
    body = {"tasks": [{"type": "echo"}, {"type": "echo"}, {"type": "nope"}]}

    assert client.post("/v1/tasks:bulk", json=body).status_code == 422
    assert stored(client) == 0


def test_a_bulk_element_the_service_refuses_is_named_by_index(client: TestClient) -> None:
    body = {"tasks": [{"type": "echo"}, {"type": "echo"}, {"type": "echo", "max_attempts": 0}]}

    assert_error(client.post("/v1/tasks:bulk", json=body), 422, "validation_error", "tasks[2].max_attempts")


def test_a_bulk_of_one_names_the_element_too(client: TestClient) -> None:
    body = {"tasks": [{"type": "echo", "max_attempts": 0}]}

    assert_error(client.post("/v1/tasks:bulk", json=body), 422, "validation_error", "tasks[0].max_attempts")


def test_a_bulk_reusing_a_key_for_a_different_task_enqueues_nothing(client: TestClient) -> None:
    client.post("/v1/tasks", json={"type": "echo", "payload": {"a": 1}, "idempotency_key": "k"})
    body = {"tasks": [{"type": "echo"}, {"type": "echo", "payload": {"a": 2}, "idempotency_key": "k"}]}

    assert_error(client.post("/v1/tasks:bulk", json=body), 422, "idempotency_mismatch")
    assert stored(client) == 1


@pytest.mark.parametrize(("body", "field"), [({"ids": []}, "ids"), ({"ids": "abc"}, "ids"), ({"ids": [1]}, "ids[0]"),
                                             ({"ids": ["a"], "all": True}, "all"), ({}, "ids")])
def test_a_bad_replay_body_is_422(client: TestClient, body: dict[str, Any], field: str) -> None:
    assert_error(client.post("/v1/dead:replay", json=body), 422, "validation_error", field)


# -- 404 / 405 ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/v1/tasks/0123456789abcdef"), ("POST", "/v1/tasks/0123456789abcdef:cancel"),
    ("GET", "/v1/schedules/none"), ("DELETE", "/v1/schedules/none"), ("GET", "/v2/tasks"), ("GET", "/dashboard"),
    ("POST", "/v1/tasks/abc:frobnicate"),
])
def test_unknown_things_are_404(client: TestClient, method: str, path: str) -> None:
    assert_error(client.request(method, path), 404, "not_found")


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("DELETE", "/v1/tasks", {"GET", "HEAD", "POST"}), ("PUT", "/v1/tasks/abc", {"GET", "HEAD"}),
    ("GET", "/v1/tasks/abc:cancel", {"POST"}), ("GET", "/v1/tasks:bulk", {"POST"}),
    ("POST", "/v1/schedules/x", {"GET", "HEAD", "PUT", "DELETE"}), ("POST", "/healthz", {"GET", "HEAD"}),
])
def test_a_wrong_method_is_a_json_405_with_allow(client: TestClient, method: str, path: str,
                                                 allowed: set[str]) -> None:
    response = client.request(method, path)

    assert_error(response, 405, "method_not_allowed")
    assert set(response.headers["allow"].split(", ")) == allowed


# -- 409 invalid_transition --------------------------------------------------------------------
def test_cancelling_a_running_task_is_202_and_asks_its_worker(client: TestClient, container: Container) -> None:
    task = client.post("/v1/tasks", json={"type": "echo"}).json()
    [lease] = asyncio.run(container.backend.claim(["default"], 1, lease_seconds=30, worker_id="w"))

    response = client.post(f"/v1/tasks/{task['id']}:cancel")

    assert (response.status_code, response.json()["status"]) == (202, "running")
    [renewed] = asyncio.run(container.backend.extend([lease], 30))
    assert renewed is not None and renewed.cancel_requested


@pytest.mark.parametrize("run", [False, True], ids=["cancelled", "succeeded"])
def test_cancelling_a_finished_task_is_409(client: TestClient, container: Container, run: bool) -> None:
    task = client.post("/v1/tasks", json={"type": "echo"}).json()
    if run:
        asyncio.run(container.invocation("w").run())
    else:
        client.post(f"/v1/tasks/{task['id']}:cancel")

    body = assert_error(client.post(f"/v1/tasks/{task['id']}:cancel"), 409, "invalid_transition")
    status = "succeeded" if run else "cancelled"
    assert body["message"] == f"cannot move a task from '{status}' to 'cancelled'"  # not <TaskStatus...>


def test_a_run_at_out_of_range_names_the_limit_as_a_date(client: TestClient, clock: FakeClock) -> None:
    body = assert_error(client.post("/v1/tasks", json={"type": "echo", "run_at": clock.now() + 400 * DAY}), 422,
                        "validation_error")

    latest = datetime.fromtimestamp(clock.now() + 366 * DAY, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert body["message"] == (f"run_at must be a time from 1970-01-01T00:00:00Z to {latest} (366 days from now), "
                               "as epoch seconds or ISO-8601")


# -- 503 backend_unavailable -------------------------------------------------------------------
@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", "/v1/tasks", {"type": "echo"}), ("POST", "/v1/tasks:bulk", {"tasks": [{"type": "echo"}]}),
    ("GET", "/v1/tasks", None), ("GET", "/v1/tasks/abc", None), ("POST", "/v1/tasks/abc:cancel", None),
    ("GET", "/v1/stats", None), ("GET", "/v1/dead", None), ("POST", "/v1/dead:replay", {"ids": ["a"]}),
    ("GET", "/v1/schedules", None), ("GET", "/v1/schedules/x", None), ("DELETE", "/v1/schedules/x", None),
    ("PUT", "/v1/schedules/x", {"spec": "@every 1m", "type": "echo"}), ("GET", "/readyz", None),
])
def test_an_unreachable_backend_is_503_with_retry_after(down_client: TestClient, method: str, path: str,
                                                        body: Any) -> None:
    response = down_client.request(method, path, json=body)

    error = assert_error(response, 503, "backend_unavailable")
    assert response.headers["retry-after"] == "3"  # 2.5 s, rounded up
    assert error["details"] == {"retry_after": 3}


def test_validation_still_comes_before_the_backend(down_client: TestClient) -> None:
    assert_error(down_client.post("/v1/tasks", json={"type": "echo", "priority": "urgent"}), 422, "validation_error")


# -- 500: only for bugs, and still JSON --------------------------------------------------------
class BuggyStats:
    """A backend with a bug in stats()."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._inner, attr)

    async def stats(self) -> Any:
        raise RuntimeError("a bug")


def test_a_bug_is_a_logged_json_500(make_client: Callable[..., TestClient], make_container: Callable[..., Container],
                                    caplog: pytest.LogCaptureFixture) -> None:
    from hexq.adapters.memory import MemoryBackend

    client = make_client(make_container(backend=BuggyStats(MemoryBackend())), raise_server_exceptions=False)

    with caplog.at_level(logging.ERROR, logger="hexq.api"):
        response = client.get("/v1/stats")

    body = assert_error(response, 500, "internal_error")
    assert "a bug" not in body["message"]  # internals stay in the log
    [record] = caplog.records
    assert record.exc_info is not None and "RuntimeError: a bug" in caplog.text

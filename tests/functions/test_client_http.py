"""What only the HTTP flavour has: the API key, long polls in slices, and HTTP answers as hexq errors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from hexq import (
    ApiError,
    AsyncClient,
    BackendUnavailable,
    QueueFull,
    TaskNotFound,
    TaskRequest,
    TaskStatus,
    WaitTimeout,
)
from hexq.core.auth import Scope, entry, new_secret
from hexq.functions.api import create_app
from hexq.functions.bootstrap import Container
from hexq.functions.client.http import HttpTransport

SECRET = new_secret()


def _http(container: Container, **headers: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(container)), base_url="http://hexq",
                             headers=headers)


@pytest.fixture
async def requests_seen(container: Container) -> AsyncIterator[tuple[AsyncClient, list[httpx.Request]]]:
    seen: list[httpx.Request] = []

    async def record(request: httpx.Request) -> None:
        seen.append(request)

    http = _http(container)
    http.event_hooks["request"] = [record]
    client = AsyncClient(HttpTransport(http, long_poll=0.1))
    yield client, seen
    await client.close()


async def test_a_wait_long_polls_in_slices_until_the_client_s_timeout(
        requests_seen: tuple[AsyncClient, list[httpx.Request]]) -> None:
    client, seen = requests_seen
    handle = await client.submit("echo", queue="nobody")
    seen.clear()

    with pytest.raises(WaitTimeout) as caught:
        await handle.wait(timeout=0.35)

    assert caught.value.task.status is TaskStatus.QUEUED
    waits = [float(request.url.params["wait"]) for request in seen if "wait" in request.url.params]
    assert len(waits) >= 3 and all(0 < wait <= 0.1 for wait in waits)
    assert all(request.url.path == f"/v1/tasks/{handle.id}" for request in seen)


async def test_submit_many_is_one_request(requests_seen: tuple[AsyncClient, list[httpx.Request]]) -> None:
    client, seen = requests_seen

    handles = await client.submit_many([TaskRequest("echo", {"i": i}) for i in range(10)])

    assert len(handles) == 10 and [request.url.path for request in seen] == ["/v1/tasks:bulk"]


async def test_the_api_key_is_sent_as_a_bearer_token(make_container: Callable[..., Container]) -> None:
    container = make_container(api_keys=entry("app", "acme", [Scope.SUBMIT, Scope.READ], SECRET))
    keyed = AsyncClient(HttpTransport(_http(container, Authorization=f"Bearer {SECRET}")))
    anonymous = AsyncClient(HttpTransport(_http(container)))

    handle = await keyed.submit("echo")
    with pytest.raises(ApiError) as caught:
        await anonymous.get(handle.id)

    assert (await handle.get()).tenant == "acme"
    assert (caught.value.status, caught.value.code) == (401, "unauthorized")
    await keyed.close()
    await anonymous.close()


def test_from_url_takes_the_key_from_hexq_api_key_unless_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEXQ_API_KEY", "from-env")

    def header(client: AsyncClient) -> str | None:
        assert isinstance(client.transport, HttpTransport)
        return client.transport._http.headers.get("authorization")

    assert header(AsyncClient.from_url("https://hexq.example/")) == "Bearer from-env"
    assert header(AsyncClient.from_url("http://hexq.example", api_key="given")) == "Bearer given"
    monkeypatch.delenv("HEXQ_API_KEY")
    assert header(AsyncClient.from_url("http://hexq.example")) is None


async def test_a_missing_scope_and_a_rate_limit_are_api_errors(make_container: Callable[..., Container]) -> None:
    container = make_container(api_keys=entry("viewer", "acme", [Scope.READ], SECRET, rate="1/h", burst=1))
    client = AsyncClient(HttpTransport(_http(container, Authorization=f"Bearer {SECRET}")))

    with pytest.raises(ApiError) as forbidden:
        await client.submit("echo")
    await client.stats()  # the one request the bucket holds
    with pytest.raises(ApiError) as limited:
        await client.stats()

    assert (forbidden.value.status, forbidden.value.code, forbidden.value.details) == (403, "forbidden",
                                                                                        {"scope": "submit"})
    assert (limited.value.status, limited.value.code) == (429, "rate_limited") and limited.value.retry_after
    await client.close()


async def test_a_full_tenant_queue_is_queue_full(make_container: Callable[..., Container]) -> None:
    client = AsyncClient(HttpTransport(_http(make_container(max_queued_per_tenant=1))))
    await client.submit("echo")

    with pytest.raises(QueueFull) as caught:
        await client.submit("echo")

    assert caught.value.limit == 1 and "1" in str(caught.value)
    await client.close()


def _answering(status: int, body: Any = None, *, text: str = "", headers: dict[str, str] | None = None,
               error: Exception | None = None) -> AsyncClient:
    """A client whose every request gets this answer (or raises `error`), as from a server or a proxy."""

    def answer(request: httpx.Request) -> httpx.Response:
        if error is not None:
            raise error
        if body is not None:
            return httpx.Response(status, json=body, headers=headers)
        return httpx.Response(status, text=text, headers=headers)

    return AsyncClient(HttpTransport(httpx.AsyncClient(transport=httpx.MockTransport(answer), base_url="http://x")))


async def test_a_backend_that_is_down_is_backend_unavailable() -> None:
    down = _answering(503, {"error": "backend_unavailable", "message": "redis: refused", "details": {"retry_after": 2}},
                      headers={"Retry-After": "2"})
    with pytest.raises(BackendUnavailable) as caught:
        await down.stats()
    assert caught.value.retry_after == 2 and "redis: refused" in str(caught.value)


@pytest.mark.parametrize("answer", [
    {"status": 502, "text": "<html>Bad Gateway</html>"},  # a proxy in front of the API
    {"status": 504, "text": ""},
    {"status": 0, "error": httpx.ConnectError("connection refused")},
    {"status": 0, "error": httpx.ReadTimeout("timed out")},
])
async def test_an_api_that_cannot_answer_is_backend_unavailable(answer: dict[str, Any]) -> None:
    with pytest.raises(BackendUnavailable):
        await _answering(**answer).get("abc")


async def test_an_answer_that_is_not_the_api_s_is_an_api_error() -> None:
    with pytest.raises(ApiError) as page:
        await _answering(404, text="<html>Not Found</html>").stats()
    with pytest.raises(ApiError) as endpoint:  # a base URL that is not a hexq API's: not a missing task
        await _answering(404, {"error": "not_found", "message": "no endpoint at /v1/stats", "details": None}).stats()

    assert (page.value.status, page.value.code) == (404, "http_error")
    assert (endpoint.value.status, endpoint.value.code) == (404, "not_found")


async def test_a_missing_task_is_task_not_found() -> None:
    gone = _answering(404, {"error": "not_found", "message": "no task 'abc'", "details": None})
    with pytest.raises(TaskNotFound, match="no task 'abc'"):
        await gone.get("abc")


async def test_a_server_that_answers_a_wait_at_once_is_not_asked_again_at_once() -> None:
    """An older API ignores ?wait= and answers at once: the client backs off instead of spinning."""
    asked: list[httpx.Request] = []
    queued = {"id": "abc", "type": "echo", "payload": {}, "queue": "default", "priority": "normal",
              "status": "queued"}

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(request)
        return httpx.Response(200, json=queued)

    client = AsyncClient(HttpTransport(httpx.AsyncClient(transport=httpx.MockTransport(answer), base_url="http://x")))
    with pytest.raises(WaitTimeout):
        await client.wait("abc", timeout=0.5)

    assert 2 <= len(asked) < 25  # a spinning client asks thousands of times in half a second

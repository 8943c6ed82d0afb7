"""Back pressure at the API: 503 overloaded with Retry-After past a queue's cap (not 429, never 500), bulk submits
refused whole, the caps and state in GET /v1/stats and /metrics, and both client flavours raising Overloaded.

The fake clock never moves here, so each container reads its view of the queues once, at the first capped
submit, and counts what it accepts on top: the cap is reached without any second read."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from hexq import AsyncClient, Overloaded, QueueFull
from hexq.core.auth import Scope, entry, new_secret
from hexq.core.errors import ConfigurationError
from hexq.functions.api import create_app
from hexq.functions.bootstrap import Container
from hexq.functions.client.direct import DirectTransport
from hexq.functions.client.http import HttpTransport

ClientFactory = Callable[..., TestClient]


@pytest.fixture
def capped(make_client: ClientFactory, make_container: Callable[..., Container]) -> Callable[..., TestClient]:
    def make(**settings: Any) -> TestClient:
        return make_client(make_container(**settings))

    return make


def submit(client: TestClient, **body: Any) -> Any:
    return client.post("/v1/tasks", json={"type": "echo", **body})


def backlog(client: TestClient) -> int:
    return client.get("/v1/stats").json()["backlog"]  # type: ignore[no-any-return]


def test_past_the_cap_a_submit_gets_503_overloaded_with_retry_after(capped: Callable[..., TestClient]) -> None:
    client = capped(max_backlog="3")
    assert [submit(client).status_code for _ in range(3)] == [202] * 3

    refused = submit(client)

    assert refused.status_code == 503
    body = refused.json()
    assert body["error"] == "overloaded"
    assert body["details"] == {"queue": "default", "reason": "backlog", "backlog": 3, "max_backlog": 3,
                               "oldest_age": 0.0, "max_oldest_age": 0.0, "retry_after": 60}  # nothing drains
    assert refused.headers["retry-after"] == "60"
    assert (refused.headers["x-hexq-backlog"], refused.headers["x-hexq-backlog-cap"]) == ("3", "3")
    assert "queue 'default' is overloaded: 3 tasks are queued, the cap is 3" in body["message"]
    assert backlog(client) == 3  # the refused submit enqueued nothing


def test_only_the_capped_queue_refuses(capped: Callable[..., TestClient]) -> None:
    client = capped(max_backlog="emails=1")
    assert submit(client, queue="emails").status_code == 202
    assert submit(client, queue="emails").status_code == 503
    assert [submit(client).status_code for _ in range(5)] == [202] * 5  # `default` has no cap


def test_a_bulk_submit_is_refused_whole(capped: Callable[..., TestClient]) -> None:
    client = capped(max_backlog="emails=2")
    ok = client.post("/v1/tasks:bulk", json={"tasks": [{"type": "echo", "queue": "emails"}] * 2})
    assert ok.status_code == 202

    mixed = client.post("/v1/tasks:bulk", json={"tasks": [{"type": "echo"}, {"type": "echo", "queue": "emails"}]})

    assert (mixed.status_code, mixed.json()["error"]) == (503, "overloaded")
    assert mixed.json()["details"]["queue"] == "emails"
    assert backlog(client) == 2  # not even the task for the uncapped queue


def test_a_bulk_below_the_cap_is_admitted_whole_even_if_it_passes_it(capped: Callable[..., TestClient]) -> None:
    # The cap is on what is queued when the submit arrives: a bulk is never refused for its own size, or a
    # bulk larger than the cap could never get in.
    client = capped(max_backlog="5")
    assert client.post("/v1/tasks:bulk", json={"tasks": [{"type": "echo"}] * 4}).status_code == 202
    assert client.post("/v1/tasks:bulk", json={"tasks": [{"type": "echo"}] * 10}).status_code == 202
    assert client.post("/v1/tasks:bulk", json={"tasks": [{"type": "echo"}]}).status_code == 503
    assert backlog(client) == 14


def test_a_bad_request_is_422_even_when_the_queue_is_overloaded(capped: Callable[..., TestClient]) -> None:
    client = capped(max_backlog="1")
    submit(client)
    assert submit(client, delay=-1).status_code == 422
    assert submit(client, type="nope").status_code == 422
    assert submit(client).status_code == 503


def test_a_delayed_submit_is_refused_too_and_adds_nothing_to_the_backlog(capped: Callable[..., TestClient]) -> None:
    client = capped(max_backlog="2")
    assert [submit(client, delay=60).status_code for _ in range(3)] == [202] * 3  # scheduled: not queued
    submit(client)
    submit(client)
    assert submit(client, delay=60).status_code == 503  # a delay is no way around a full queue


SECRETS = {"a": new_secret(), "b": new_secret()}


def test_overloaded_is_503_for_everyone_and_queue_full_429_for_one_tenant(
        capped: Callable[..., TestClient]) -> None:
    keys = "\n".join(entry(name, tenant, [Scope.SUBMIT, Scope.READ], SECRETS[name])
                     for name, tenant in (("a", "acme"), ("b", "globex")))
    client = capped(api_keys=keys, max_queued_per_tenant=2, max_backlog="3")

    def as_(name: str) -> dict[str, str]:
        return {"X-API-Key": SECRETS[name]}

    statuses = [client.post("/v1/tasks", json={"type": "echo"}, headers=as_("a")).status_code for _ in range(3)]
    assert statuses == [202, 202, 429]  # acme's own cap: 429 queue_full, only for acme
    assert client.post("/v1/tasks", json={"type": "echo"}, headers=as_("b")).status_code == 202
    refused = client.post("/v1/tasks", json={"type": "echo"}, headers=as_("b"))
    assert (refused.status_code, refused.json()["error"]) == (503, "overloaded")  # the queue's cap: everyone


def test_stats_show_the_caps_and_the_state(capped: Callable[..., TestClient]) -> None:
    client = capped(max_backlog="2,emails=10", max_oldest_age="emails=30")
    submit(client)
    submit(client)

    pressures = {p["queue"]: p for p in client.get("/v1/stats").json()["backpressure"]}

    assert set(pressures) == {"default", "emails"}
    assert pressures["default"] | {"oldest_age": 0} == {
        "queue": "default", "overloaded": True, "reason": "backlog", "backlog": 2, "max_backlog": 2, "oldest_age": 0,
        "max_oldest_age": 0.0, "drain_rate": 0.0, "retry_after": 60}
    assert (pressures["emails"]["overloaded"], pressures["emails"]["max_oldest_age"]) == (False, 30.0)


def test_stats_without_caps_list_no_pressure(client: TestClient) -> None:
    assert client.get("/v1/stats").json()["backpressure"] == []


def test_metrics_show_the_overloaded_queue_and_count_the_refusals(capped: Callable[..., TestClient]) -> None:
    client = capped(max_backlog="1,emails=0", max_oldest_age="emails=60")
    submit(client)
    submit(client)
    submit(client)

    body = client.get("/metrics").text

    assert 'hexq_queue_overloaded{queue="default"} 1.0' in body
    assert 'hexq_queue_overloaded{queue="emails"} 0.0' in body
    assert 'hexq_queue_backlog_cap{queue="default"} 1.0' in body
    assert 'hexq_queue_backlog_cap{queue="emails"}' not in body  # 0: no cap
    assert 'hexq_queue_oldest_age_cap_seconds{queue="emails"} 60.0' in body
    assert 'hexq_submit_rejections_total{reason="overloaded"} 2.0' in body


def test_a_bad_cap_stops_the_process_before_it_serves(make_container: Callable[..., Container]) -> None:
    with pytest.raises(ConfigurationError, match="HEXQ_MAX_BACKLOG: 'lots' is not a cap"):
        make_container(max_backlog="lots")


async def test_the_http_client_raises_overloaded_with_retry_after(
        make_container: Callable[..., Container]) -> None:
    app = create_app(make_container(max_backlog="1"))
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hexq")
    client = AsyncClient(HttpTransport(http))
    await client.submit("echo")

    with pytest.raises(Overloaded) as caught:
        await client.submit("echo")

    error = caught.value
    assert not isinstance(error, QueueFull)
    assert (error.queue, error.reason, error.backlog, error.max_backlog, error.retry_after) == (
        "default", "backlog", 1, 1, 60.0)
    assert "overloaded" in str(error)
    await client.close()


async def test_the_direct_client_raises_the_same(make_container: Callable[..., Container]) -> None:
    client = AsyncClient(DirectTransport(make_container(max_backlog="1")))
    await client.submit("echo")

    with pytest.raises(Overloaded) as caught:
        await client.submit("echo")

    assert (caught.value.queue, caught.value.retry_after) == ("default", 60.0)
    await client.close()

"""Rate limits at the API (RELIABILITY T22, in-process): a token bucket per key, and a per-tenant queued cap."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from starlette.testclient import TestClient

from hexq.core.auth import Scope, entry, new_secret
from hexq.core.clock import FakeClock
from hexq.core.schedules import ScheduleService
from hexq.functions.bootstrap import Container

ClientFactory = Callable[..., TestClient]
SECRETS = {name: new_secret() for name in ("a", "b", "slow", "free")}
ENTRIES = [
    entry("a", "acme", [Scope.SUBMIT, Scope.READ], SECRETS["a"]),
    entry("b", "globex", [Scope.SUBMIT, Scope.READ], SECRETS["b"]),
    entry("slow", "acme", [Scope.READ], SECRETS["slow"], rate="1/min", burst=1),
    entry("free", "acme", [Scope.READ], SECRETS["free"], rate="0"),
]


def as_(name: str) -> dict[str, str]:
    return {"X-API-Key": SECRETS[name]}


@pytest.fixture
def make_keyed(make_client: ClientFactory, make_container: Callable[..., Container]) -> Callable[..., TestClient]:
    def make(**settings: Any) -> TestClient:
        return make_client(make_container(api_keys="\n".join(ENTRIES), **settings))

    return make


def post(client: TestClient, key: str, **body: Any) -> Any:
    return client.post("/v1/tasks", json={"type": "echo", **body}, headers=as_(key))


def backlog(client: TestClient, key: str = "free") -> int:
    return client.get("/v1/stats", headers=as_(key)).json()["backlog"]  # type: ignore[no-any-return]


# -- per-key token bucket ---------------------------------------------------------------------------
def test_a_burst_is_allowed_then_429_with_retry_after(make_keyed: Callable[..., TestClient]) -> None:
    client = make_keyed(rate="2/s", burst=5)

    assert [post(client, "a").status_code for _ in range(5)] == [202] * 5
    refused = post(client, "a")

    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "1"  # 0.5 s rounded up: never 0
    assert refused.json() == {"error": "rate_limited", "message": "too many requests for this API key; retry in 1s",
                              "details": {"retry_after": 1}}
    assert backlog(client) == 5  # the refused request enqueued nothing


def test_a_second_key_is_not_affected(make_keyed: Callable[..., TestClient]) -> None:
    client = make_keyed(rate="1/min", burst=2)
    for _ in range(2):
        post(client, "a")
    assert post(client, "a").status_code == 429

    assert [post(client, "b").status_code for _ in range(2)] == [202, 202]
    assert post(client, "a").status_code == 429


def test_every_endpoint_draws_on_the_same_bucket(make_keyed: Callable[..., TestClient]) -> None:
    client = make_keyed(rate="1/min", burst=2)
    assert post(client, "a").status_code == 202
    assert client.get("/v1/tasks", headers=as_("a")).status_code == 200

    limited = client.get("/v1/stats", headers=as_("a"))
    assert (limited.status_code, limited.headers["retry-after"]) == (429, "60")


def test_the_bucket_refills_with_time(make_keyed: Callable[..., TestClient], clock: FakeClock) -> None:
    client = make_keyed(rate="10/s", burst=1)
    assert post(client, "a").status_code == 202
    assert post(client, "a").status_code == 429

    clock.advance(0.1)
    assert post(client, "a").status_code == 202


def test_a_key_s_own_rate_and_burst_override_the_defaults(make_keyed: Callable[..., TestClient]) -> None:
    client = make_keyed(rate="100/s", burst=100)

    assert client.get("/v1/stats", headers=as_("slow")).status_code == 200
    refused = client.get("/v1/stats", headers=as_("slow"))
    assert (refused.status_code, refused.headers["retry-after"]) == (429, "60")
    assert all(client.get("/v1/stats", headers=as_("free")).status_code == 200 for _ in range(150))  # rate=0


def test_rate_0_turns_the_limit_off(make_keyed: Callable[..., TestClient]) -> None:
    client = make_keyed(rate="0", burst=1)
    assert [post(client, "a").status_code for _ in range(20)] == [202] * 20


def test_unauthenticated_and_forbidden_requests_take_no_token(make_keyed: Callable[..., TestClient]) -> None:
    client = make_keyed(rate="1/min", burst=1)
    assert client.post("/v1/tasks", json={"type": "echo"}).status_code == 401
    assert client.post("/v1/tasks", json={"type": "echo"}, headers=as_("slow")).status_code == 403
    assert client.get("/v1/stats", headers=as_("slow")).status_code == 200


def test_without_keys_nothing_is_rate_limited(client: TestClient, make_client: ClientFactory,
                                              make_container: Callable[..., Container]) -> None:
    open_client = make_client(make_container(rate="1/min", burst=1))
    assert [open_client.get("/v1/stats").status_code for _ in range(5)] == [200] * 5


# -- per-tenant cap on waiting tasks ------------------------------------------------------------------
def test_a_submit_over_the_tenant_cap_gets_429_queue_full(make_keyed: Callable[..., TestClient]) -> None:
    client = make_keyed(max_queued_per_tenant=2)
    post(client, "a")
    post(client, "a", delay=60)  # scheduled tasks count: they are waiting too

    full = post(client, "a")
    assert full.status_code == 429
    assert full.headers["retry-after"] == "5"
    assert full.json()["error"] == "queue_full"
    assert full.json()["details"] == {"limit": 2, "retry_after": 5}
    assert post(client, "b").status_code == 202  # another tenant has its own cap
    assert backlog(client) == 2


def test_a_bulk_that_would_pass_the_cap_enqueues_nothing(make_keyed: Callable[..., TestClient]) -> None:
    client = make_keyed(max_queued_per_tenant=3)
    post(client, "a")
    bulk = client.post("/v1/tasks:bulk", json={"tasks": [{"type": "echo"}] * 3}, headers=as_("a"))

    assert (bulk.status_code, bulk.json()["error"]) == (429, "queue_full")
    assert backlog(client) == 1
    ok = client.post("/v1/tasks:bulk", json={"tasks": [{"type": "echo"}] * 2}, headers=as_("a"))
    assert ok.status_code == 202


def test_finished_and_cancelled_tasks_free_the_cap(make_keyed: Callable[..., TestClient],
                                                   make_container: Callable[..., Container]) -> None:
    client = make_keyed(max_queued_per_tenant=1)
    task = post(client, "a").json()
    assert post(client, "a").status_code == 429

    assert client.post(f"/v1/tasks/{task['id']}:cancel", headers=as_("a")).status_code == 200
    assert post(client, "a").status_code == 202


def test_the_cap_is_off_by_default(make_keyed: Callable[..., TestClient]) -> None:
    client = make_keyed(rate="0")
    assert all(post(client, "a").status_code == 202 for _ in range(50))


def test_a_schedule_of_a_full_tenant_skips_its_firing(make_container: Callable[..., Container],
                                                      clock: FakeClock) -> None:
    container = make_container(max_queued_per_tenant=1)
    schedules: ScheduleService = container.schedules

    async def scenario() -> int:
        await schedules.put("tick", "@every 1m", "echo", tenant="acme")
        await schedules.put("tock", "@every 1m", "echo", tenant="acme")
        clock.advance(61)
        return await schedules.fire_due()  # one fires, the other meets the cap; neither raises

    assert asyncio.run(scenario()) == 1

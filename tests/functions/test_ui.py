"""The dashboard's server side: pages and their headers, content negotiation at /, and the /v1 endpoints
it reads (events, types, whoami). The pages' behaviour in a real browser is tests/browser's."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import replace

import pytest
from starlette.testclient import TestClient

from hexq.core.auth import Scope, entry, new_secret
from hexq.core.model import Priority, Task, TaskStatus
from hexq.functions.bootstrap import Container
from hexq.functions.metrics.summary import quantile
from hexq.functions.ui.live import Broadcaster, Snapshot
from hexq.functions.ui.pages import PAGES

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
PATHS = ["/", *(f"/ui{path}" for path, _, _ in PAGES), "/ui/tasks/abc123"]


@pytest.mark.parametrize("path", PATHS)
def test_every_page_is_html_under_a_strict_content_security_policy(client: TestClient, path: str) -> None:
    response = client.get(path, headers=BROWSER)

    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    policy = response.headers["content-security-policy"]
    for directive in ("default-src 'self'", "script-src 'self'", "object-src 'none'", "frame-ancestors 'none'"):
        assert directive in policy
    assert "unsafe" not in policy
    html = response.text
    assert not re.search(r"<script(?![^>]*\bsrc=)", html), "no inline script"
    assert not re.search(r"\sstyle=|<style|\son[a-z]+=", html), "no inline style or handler attributes"
    assert not re.search(r"(src|href)=\"(https?:)?//", html), "nothing from another origin"


def test_slash_answers_links_to_api_clients_and_the_dashboard_to_browsers(client: TestClient) -> None:
    for accept in ("*/*", "application/json", "application/json, text/html;q=0.5", ""):
        assert client.get("/", headers={"Accept": accept}).json()["name"] == "hexq", accept
    page = client.get("/", headers=BROWSER)
    assert 'data-page="overview"' in page.text and page.headers["vary"] == "Accept"


def test_a_task_id_is_escaped_into_the_task_page(client: TestClient) -> None:
    html = client.get('/ui/tasks/"><img src=x onerror=alert(1)>', headers=BROWSER).text

    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


def test_the_static_module_and_stylesheet_are_served_with_their_types(client: TestClient) -> None:
    script = client.get("/ui/static/app.js")
    style = client.get("/ui/static/app.css")

    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert style.status_code == 200 and style.headers["content-type"].startswith("text/css")
    # data goes in as text only (textContent, createElement), never parsed as HTML
    assert not re.search(r"\.(innerHTML|outerHTML|insertAdjacentHTML)\b|document\.write", script.text)


def test_types_lists_the_registered_task_types(client: TestClient) -> None:
    types = {t["name"]: t for t in client.get("/v1/types").json()["types"]}

    assert set(types) == {"echo", "sync_echo", "boom", "slow"}
    assert types["boom"]["max_attempts"] == 3 and types["slow"]["timeout"] == 5.0
    assert types["echo"] == {"name": "echo", "queue": "default", "max_attempts": 3, "timeout": 300.0, "rate": None,
                             "concurrency": None, "validates": False}


def test_events_without_a_stream_asked_for_is_one_snapshot(client: TestClient) -> None:
    client.post("/v1/tasks", json={"type": "echo"})

    response = client.get("/v1/events")

    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.text.count("event: snapshot\n") == 1 and response.text.endswith("\n\n")
    assert '"backlog":1' in response.text and '"workers":[]' in response.text


def test_events_is_503_when_the_backend_is_down(down_client: TestClient) -> None:
    assert down_client.get("/v1/events").status_code == 503


async def test_many_viewers_share_one_backend_read_a_second() -> None:
    now = [0.0]
    reads = 0

    async def read() -> Snapshot:
        nonlocal reads
        reads += 1
        await asyncio.sleep(0.01)
        return {"n": reads}

    broadcaster = Broadcaster(read, monotonic=lambda: now[0])
    first = await asyncio.gather(*(broadcaster.latest() for _ in range(50)))
    now[0] = 0.5
    cached = await broadcaster.latest()
    now[0] = 1.0
    second = await asyncio.gather(*(broadcaster.latest() for _ in range(50)))

    assert {s["n"] for s in first} == {1} and cached["n"] == 1 and {s["n"] for s in second} == {2}
    assert reads == broadcaster.reads == 2


async def test_a_stream_goes_on_past_a_failed_read() -> None:
    calls = 0

    async def read() -> Snapshot:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("backend gone")
        return {"n": calls}

    broadcaster = Broadcaster(read, interval=0.01, monotonic=lambda: float(calls))
    stream = broadcaster.stream({"n": 0})
    events = [await anext(stream) for _ in range(3)]
    await stream.aclose()

    assert events[0].startswith(b"event: snapshot\n") and events[1].startswith(b"event: error\n")
    assert b"backend gone" in events[1] and events[2] == b'event: snapshot\ndata: {"n":2}\n\n'


# -- who is asking -------------------------------------------------------------------------------------
SECRETS = {"reader": new_secret(), "boss": new_secret()}
KEYS = ",".join([entry("reader", "acme", [Scope.READ], SECRETS["reader"]),
                 entry("boss", "*", [Scope.ADMIN], SECRETS["boss"])])


@pytest.fixture
def keyed(make_client: Callable[..., TestClient], make_container: Callable[..., Container]) -> TestClient:
    return make_client(make_container(api_keys=KEYS))


def test_whoami_is_null_on_an_open_api(client: TestClient) -> None:
    response = client.get("/v1/whoami")
    assert response.status_code == 200 and response.json() is None


def test_whoami_names_the_key_and_its_scopes_never_its_secret(keyed: TestClient) -> None:
    reader = keyed.get("/v1/whoami", headers={"X-API-Key": SECRETS["reader"]})
    boss = keyed.get("/v1/whoami", headers={"Authorization": f"Bearer {SECRETS['boss']}"})

    assert reader.json() == {"name": "reader", "tenant": "acme", "scopes": ["read"]}
    assert boss.json() == {"name": "boss", "tenant": "*", "scopes": ["admin"]}
    assert SECRETS["reader"] not in reader.text
    assert keyed.get("/v1/whoami").status_code == 401
    assert keyed.get("/v1/whoami", headers={"X-API-Key": "nope"}).status_code == 401


def test_a_read_key_reads_the_dashboard_endpoints_and_acts_on_nothing(keyed: TestClient) -> None:
    read = {"X-API-Key": SECRETS["reader"]}

    assert keyed.get("/v1/types", headers=read).status_code == 200
    assert keyed.get("/v1/events", headers=read).status_code == 200
    assert keyed.get("/v1/events").status_code == 401
    assert keyed.post("/v1/tasks", json={"type": "echo"}, headers=read).status_code == 403
    assert keyed.post("/v1/dead:replay", json={"ids": ["x"]}, headers=read).status_code == 403


# -- histograms ----------------------------------------------------------------------------------------
def test_histograms_sum_queue_wait_by_priority_and_duration_by_status(client: TestClient,
                                                                       container: Container) -> None:
    assert container.metrics is not None
    events = container.metrics.events
    for i, (priority, wait) in enumerate([(Priority.HIGH, 0.003)] * 9 + [(Priority.HIGH, 2.0), (Priority.LOW, 40.0)]):
        task = Task(id=f"t{i}", type="echo", payload={}, priority=priority, created_at=100.0,
                    started_at=100.0 + wait)
        events.started(task)
        events.finished(task, replace(task, status=TaskStatus.SUCCEEDED), 0.02)
    events.fenced("ack", task)

    figures = client.get("/v1/histograms").json()
    snapshot = client.get("/v1/events").text

    wait = figures["queue_wait"]
    assert wait["by"] == "priority" and set(wait["series"]) == {"high", "low"}
    high = wait["series"]["high"]
    assert high["count"] == 10 and sum(high["counts"]) == 10 and len(high["counts"]) == len(high["bounds"]) + 1
    assert 0.0025 < high["p50"] <= 0.005 and 1.0 < high["p99"] <= 2.5
    assert wait["series"]["low"]["p50"] == pytest.approx(45.0)  # one in 30-60 s: halfway through it
    assert figures["duration"]["series"]["succeeded"]["count"] == 11
    assert figures["fencing_rejections"] == 1 and figures["lease_recoveries"] == 0
    assert '"histograms":{"metrics":true' in snapshot


def test_histograms_say_metrics_off(make_client: Callable[..., TestClient],
                                    make_container: Callable[..., Container]) -> None:
    off = make_client(make_container(metrics="off"))

    assert off.get("/v1/histograms").json() == {"metrics": False}
    assert '"histograms":{"metrics":false}' in off.get("/v1/events").text


def test_quantiles_interpolate_within_a_bucket_as_promql_does() -> None:
    inf = float("inf")
    assert quantile(0.5, [1.0, 2.0, inf], [2.0, 4.0, 4.0]) == 1.0
    assert quantile(0.75, [1.0, 2.0, inf], [2.0, 4.0, 4.0]) == 1.5
    assert quantile(0.99, [1.0, 2.0, inf], [0.0, 0.0, 5.0]) == 2.0  # past the last bound: the last bound
    assert quantile(0.5, [1.0, inf], [0.0, 0.0]) is None


# -- why is it waiting ---------------------------------------------------------------------------------
def test_why_names_what_holds_a_queued_task_back(client: TestClient) -> None:
    client.post("/v1/queues/default:pause")
    first = client.post("/v1/tasks", json={"type": "echo"}).json()["id"]
    client.post("/v1/tasks", json={"type": "echo", "priority": "high"})
    last = client.post("/v1/tasks", json={"type": "echo"}).json()["id"]

    why = client.get(f"/v1/tasks/{last}/why").json()

    kinds = {r["kind"]: r for r in why["reasons"]}
    assert why["status"] == "queued" and set(kinds) == {"paused", "no_worker", "ahead"}
    assert kinds["ahead"]["same_priority"] == 1 and kinds["ahead"]["higher_priority"] == 1
    assert "at most 1 queued ahead at normal priority" in kinds["ahead"]["message"]
    assert client.get(f"/v1/tasks/{first}/why").json()["reasons"][0]["kind"] == "paused"


def test_why_tells_a_delay_and_the_tenant_cap_and_nothing_for_a_finished_task(
        make_client: Callable[..., TestClient], make_container: Callable[..., Container]) -> None:
    capped = make_client(make_container(max_queued_per_tenant=5))
    later = capped.post("/v1/tasks", json={"type": "echo", "delay": 600}).json()["id"]
    gone = capped.post("/v1/tasks", json={"type": "echo"}).json()["id"]
    capped.post(f"/v1/tasks/{gone}:cancel")

    kinds = {r["kind"]: r for r in capped.get(f"/v1/tasks/{later}/why").json()["reasons"]}

    assert kinds["delayed"]["seconds"] == pytest.approx(600) and "due in 10 min" in kinds["delayed"]["message"]
    assert kinds["tenant_cap"]["cap"] == 5
    assert capped.get(f"/v1/tasks/{gone}/why").json()["reasons"] == []
    assert capped.get("/v1/tasks/nope/why").status_code == 404

"""Abuse of the API over real sockets (RELIABILITY T16 idempotency under concurrency, T22 a 10k burst).

Each test starts its own `hexq serve` (uvicorn on a free 127.0.0.1 port) on SQLite in tmp, or on Redis with a
fresh `partition=` per test. Figures are printed; run with -s to see them.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import flood
import httpx
import pytest
from harness import report
from served import hexq_serve

from hexq.core.auth import Scope, entry, new_secret

pytestmark = pytest.mark.reliability


# -- a real `hexq serve`: served.py


def make_key(name: str, tenant: str, *, rate: str | None = None, burst: int | None = None) -> tuple[str, str]:
    """(secret, HEXQ_API_KEYS entry), as `python -m hexq.functions.auth keygen` makes them."""
    secret = new_secret()
    return secret, entry(name, tenant, [Scope.SUBMIT, Scope.READ], secret, rate=rate, burst=burst)


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


# -- T16: idempotency keys under concurrency ---------------------------------------------------------------
@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def backend_env(request: pytest.FixtureRequest) -> dict[str, str]:
    if request.param == "sqlite":
        return {}
    url: str = request.getfixturevalue("redis_url")
    return {"HEXQ_BACKEND": f"{url}?partition=t16{uuid.uuid4().hex[:12]}"}


@pytest.mark.timeout(120)
async def test_fifty_concurrent_submits_with_one_key_create_one_task(tmp_path: Path,
                                                                     backend_env: dict[str, str]) -> None:
    acme, acme_entry = make_key("acme-app", "acme")
    globex, globex_entry = make_key("globex-app", "globex")
    env = {**backend_env, "HEXQ_API_KEYS": f"{acme_entry},{globex_entry}", "HEXQ_TASKS": "hexq.functions.examples"}
    # No workers pick the task up mid-test (a delayed task), so the listing is stable.
    body = {"type": "echo", "payload": {"order": 42}, "delay": 3600}
    with hexq_serve(tmp_path, env=env) as served:
        url = served.url
        async with httpx.AsyncClient(base_url=url, timeout=30,
                                     limits=httpx.Limits(max_connections=50)) as client:
            headers = {**bearer(acme), "Idempotency-Key": "order-42"}
            responses = await asyncio.gather(*(client.post("/v1/tasks", json=body, headers=headers)
                                               for _ in range(50)))
            statuses = Counter(r.status_code for r in responses)
            report(tmp_path / "report.jsonl", "T16_idempotency_concurrent", None, api=None, wall_s=0.0,
                   accepted=statuses[202], backend=backend_env.get("HEXQ_BACKEND", "sqlite").split(":")[0],
                   statuses={str(k): v for k, v in statuses.items()})
            assert statuses[202] == 1, statuses
            assert set(statuses) <= {200, 202, 409}, statuses
            ids = {r.json()["id"] for r in responses if r.status_code in (200, 202)}
            assert len(ids) == 1
            assert all(r.headers.get("idempotent-replayed") == "true" for r in responses if r.status_code == 200)

            listed = (await client.get("/v1/tasks", params={"limit": 500}, headers=bearer(acme))).json()["tasks"]
            assert [t["id"] for t in listed] == list(ids)

            # Same key, a different body: 422 idempotency_mismatch, nothing new.
            other = await client.post("/v1/tasks", json={**body, "payload": {"order": 43}}, headers=headers)
            assert other.status_code == 422 and other.json()["error"] == "idempotency_mismatch"

            # Same key under another tenant: a task of its own, and only that tenant sees it.
            theirs = await client.post("/v1/tasks", json=body,
                                       headers={**bearer(globex), "Idempotency-Key": "order-42"})
            assert theirs.status_code == 202 and theirs.json()["id"] not in ids
            assert (await client.get(f"/v1/tasks/{theirs.json()['id']}", headers=bearer(acme))).status_code == 404
            listed = (await client.get("/v1/tasks", params={"limit": 500}, headers=bearer(acme))).json()["tasks"]
            assert len(listed) == 1
            stats = (await client.get("/v1/stats", headers=bearer(acme))).json()
            assert sum(stats["by_status"].values()) == 2  # stats count every tenant


# -- T22: a 10,000-request burst against one rate-limited key ------------------------------------------------
# As RELIABILITY T22: 10,000 POSTs over 200 connections, one key at 100/s burst 200. The flood goes through
# flood.py: with httpx the client, not the server, set the pace (~60-95 requests/s), so the key never ran out.
TOTAL = 10_000
CONCURRENCY = 200
RATE, BURST = 100.0, 200


def _pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


@pytest.mark.timeout(180)
async def test_a_burst_is_limited_per_key_and_the_other_key_is_unaffected(tmp_path: Path) -> None:
    flood_secret, flood_entry = make_key("flood", "acme", rate=f"{RATE:g}/s", burst=BURST)
    calm, calm_entry = make_key("calm", "globex", rate="0")
    env = {"HEXQ_API_KEYS": f"{flood_entry},{calm_entry}", "HEXQ_TASKS": "hexq.functions.examples"}
    with hexq_serve(tmp_path, env=env, args=("--workers", "2", "--poll-interval", "0.2")) as served:
        url = served.url
        calm_latencies: list[float] = []
        calm_statuses: Counter[int] = Counter()
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            async def calm_client() -> None:
                while not done.is_set():
                    started = time.perf_counter()
                    r = await client.post("/v1/tasks", json={"type": "noop"}, headers=bearer(calm))
                    calm_latencies.append(time.perf_counter() - started)
                    calm_statuses[r.status_code] += 1
                    await asyncio.sleep(0.02)

            done = asyncio.Event()
            request = flood.request_bytes(url, "/v1/tasks", {"type": "noop"}, bearer(flood_secret))
            started = time.perf_counter()
            calm_task = asyncio.create_task(calm_client())
            results = await flood.flood(url, request, TOTAL, CONCURRENCY)
            elapsed = time.perf_counter() - started
            done.set()
            await calm_task
            statuses, retry_afters = results.statuses, results.retry_afters

            accepted = statuses[202]
            expected = BURST + RATE * elapsed
            api_5xx = sum(n for s, n in statuses.items() if s >= 500)
            assert set(statuses) <= {202, 429}, statuses
            assert set(results.errors) <= {"rate_limited"}, results.errors
            assert sum(statuses.values()) == TOTAL
            # Never more than the bucket allows; at least what it allows, or every request when fewer came.
            assert accepted <= 1.1 * expected + 20
            assert accepted >= min(TOTAL, 0.7 * expected - 20) - 10
            if TOTAL / elapsed > 1.5 * RATE:
                assert statuses[429] > 0
            assert all(seconds >= 1 for seconds in retry_afters)
            assert set(calm_statuses) == {202}
            # Bounded, not fast: the other key waits behind the 200 flood requests in flight (no per-key fairness in
            # uvicorn); observed p99 0.75 s at ~775 requests/s on the shared 2-core box, so 10 s is a generous bound.
            assert _pct(calm_latencies, 0.99) < 10.0

            # Every accepted task completes (the serve process runs the workers).
            total_accepted = accepted + calm_statuses[202]
            deadline = time.monotonic() + 90
            by_status: dict[str, Any] = {}
            while time.monotonic() < deadline:
                by_status = (await client.get("/v1/stats", headers=bearer(calm))).json()["by_status"]
                if by_status.get("succeeded", 0) >= total_accepted:
                    break
                await asyncio.sleep(0.5)
            report(tmp_path / "report.jsonl", "T22_burst_rate_limit", None, api=None, wall_s=elapsed,
                   accepted=accepted, completed=by_status.get("succeeded", 0), api_5xx=api_5xx, requests=TOTAL,
                   concurrency=CONCURRENCY, rate=RATE, burst=BURST, expected_accepted=round(expected),
                   rejected_429=statuses[429], requests_per_s=round(TOTAL / elapsed), calm_requests=len(calm_latencies),
                   calm_p50_s=round(_pct(calm_latencies, 0.5), 3), calm_p99_s=round(_pct(calm_latencies, 0.99), 3),
                   drained_s=round(time.perf_counter() - started - elapsed, 2))
            assert by_status.get("succeeded", 0) == total_accepted == sum(by_status.values()), by_status

"""Back pressure under load (issue #15, item 2): `hexq serve` with a backlog cap and slow workers, flooded with
submits at many times what the workers can do. The backlog must stay near the cap, the refusals must be 503
`overloaded` with a sane Retry-After (never a 5xx of another kind, never a 429), and every accepted task must
finish. The figures are printed (run with -s to see them)."""

from __future__ import annotations

import asyncio
import collections
import statistics
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
import pytest

if TYPE_CHECKING:
    from tests.integration.conftest import Served

CAP = 60
# Capacity: 2 / 0.25 s = 8 tasks/s, so that even a loaded CI machine submits many times faster than that.
WORKERS, CONCURRENCY, TASK_SECONDS = 1, 2, 0.25
FLOOD_SECONDS = 6.0
SUBMITTERS = 8  # concurrent connections, each as fast as the server answers


class Tally:
    def __init__(self) -> None:
        self.accepted: list[str] = []
        self.statuses: collections.Counter[int] = collections.Counter()
        self.errors: collections.Counter[str] = collections.Counter()
        self.retry_after: list[int] = []
        self.longest_until = 0.0  # seconds into the flood of the last 60 s Retry-After
        self.started = time.monotonic()
        self.backlogs: list[int] = []
        self.drain_rates: list[float] = []


async def _submitter(client: httpx.AsyncClient, tally: Tally, until: float) -> None:
    while time.monotonic() < until:
        response = await client.post("/v1/tasks", json={"type": "sleep", "payload": {"seconds": TASK_SECONDS}})
        tally.statuses[response.status_code] += 1
        if response.status_code == 202:
            tally.accepted.append(response.json()["id"])
            continue
        tally.errors[response.json().get("error", "?")] += 1
        if "retry-after" in response.headers:
            tally.retry_after.append(int(response.headers["retry-after"]))
            if tally.retry_after[-1] == 60:
                tally.longest_until = time.monotonic() - tally.started
        await asyncio.sleep(0.005)  # a flood, not a busy loop: the server must keep a core for its workers


async def _sampler(client: httpx.AsyncClient, tally: Tally, until: float) -> None:
    while time.monotonic() < until:
        stats = (await client.get("/v1/stats")).json()
        [pressure] = [p for p in stats["backpressure"] if p["queue"] == "default"]
        tally.backlogs.append(pressure["backlog"])
        tally.drain_rates.append(pressure["drain_rate"])
        await asyncio.sleep(0.2)


async def _flood(url: str) -> tuple[Tally, float]:
    tally = Tally()
    limits = httpx.Limits(max_connections=SUBMITTERS + 1)
    async with httpx.AsyncClient(base_url=url, trust_env=False, timeout=10.0, limits=limits) as client:
        started = tally.started = time.monotonic()
        until = started + FLOOD_SECONDS
        await asyncio.gather(_sampler(client, tally, until), *(_submitter(client, tally, until)
                                                               for _ in range(SUBMITTERS)))
        return tally, time.monotonic() - started


async def _finished(url: str, ids: list[str], within: float) -> collections.Counter[str]:
    async with httpx.AsyncClient(base_url=url, trust_env=False, timeout=10.0) as client:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            stats = (await client.get("/v1/stats")).json()
            if stats["by_status"]["queued"] + stats["by_status"]["running"] == 0:
                break
            await asyncio.sleep(0.5)
        statuses: collections.Counter[str] = collections.Counter()
        for task_id in ids:
            statuses[(await client.get(f"/v1/tasks/{task_id}")).json()["status"]] += 1
        return statuses


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_a_flood_is_held_at_the_cap_with_503_overloaded_and_loses_nothing(
        serve: Callable[..., Served], backend_url: str) -> None:
    served = serve("--workers", str(WORKERS), "--concurrency", str(CONCURRENCY), "--max-backlog", str(CAP),
                   "--no-task-events", backend=backend_url)
    tally, seconds = asyncio.run(_flood(served.url))
    drain_started = time.monotonic()
    finished = asyncio.run(_finished(served.url, tally.accepted, within=45))
    drained_in = time.monotonic() - drain_started
    _report(backend_url, tally, seconds, finished, drained_in)

    rejected = tally.statuses[503]
    assert set(tally.statuses) <= {202, 503}, tally.statuses  # never a 500, never a 429 (no key limits here)
    assert rejected > len(tally.accepted), "the flood should be mostly refused"
    assert set(tally.errors) == {"overloaded"}
    assert len(tally.retry_after) == rejected and all(1 <= s <= 60 for s in tally.retry_after)
    # Once the drain rate is measured (after the first second), Retry-After follows it: the excess over the
    # cap is a few tasks, and 8/s leave, so seconds, not the 60 of "nothing measured".
    later = tally.retry_after[len(tally.retry_after) // 2:]
    assert statistics.median(later) <= 5, collections.Counter(later)
    assert max(tally.backlogs) <= CAP + 20, tally.backlogs  # a soft cap: a read's worth of slack at most
    assert max(tally.backlogs) >= CAP * 0.8, tally.backlogs  # and the flood did fill the queue
    assert finished == {"succeeded": len(tally.accepted)}, finished  # nothing accepted is lost
    assert served.proc.terminate() == 0


def _report(backend: str, tally: Tally, seconds: float, finished: collections.Counter[str],
            drained_in: float) -> None:
    total = sum(tally.statuses.values())
    retry: dict[str, Any] = {"min": min(tally.retry_after, default=None), "max": max(tally.retry_after, default=None),
                             "median": statistics.median(tally.retry_after) if tally.retry_after else None,
                             "counts": dict(sorted(collections.Counter(tally.retry_after).items()))}
    print(f"\nback pressure under load ({backend.split(':')[0]}): cap {CAP}, workers {WORKERS}x{CONCURRENCY} of "
          f"{TASK_SECONDS}s tasks (capacity {WORKERS * CONCURRENCY / TASK_SECONDS:.0f}/s), {SUBMITTERS} submitters "
          f"for {seconds:.1f}s")
    print(f"  submits {total} ({total / seconds:.0f}/s): accepted {len(tally.accepted)} "
          f"({len(tally.accepted) / seconds:.0f}/s), rejected 503 overloaded {tally.statuses[503]}; "
          f"statuses {dict(tally.statuses)}")
    print(f"  backlog sampled every 0.2s: max {max(tally.backlogs)}, median {statistics.median(tally.backlogs)}; "
          f"drain rate seen (tasks/s): median {statistics.median(tally.drain_rates):.1f}, "
          f"max {max(tally.drain_rates):.1f}")
    print(f"  Retry-After (s): {retry}; the last 60 s answer {tally.longest_until:.1f}s into the flood "
          "(60: nothing of the queue running yet, i.e. before the worker pool started)")
    print(f"  accepted tasks afterwards: {dict(finished)}, drained in {drained_in:.1f}s")

"""Fair queues under load (issue #15): a tenant's backlog does not make another tenant wait behind it.

Two real `hexq worker` processes (concurrency 10 each) serve the default queue. Tenant A submits 5,000 `sleep`
tasks of 5 ms (bulk, through the same TaskService the API uses), then tenant B submits 20. With FIFO queues B's
tasks would start only after A's whole backlog (seconds); with fair queues they take turns with A's and start
within a few dozen tasks. The test prints B's start latency (started_at - created_at, both the backend's clock)
and A's backlog when B was submitted and when B's last task had started, and asserts:
- B's tasks all ran while A still had most of its backlog queued: a count, not a time, so noise cannot fail it;
- B's p99 start latency under 1 s (generous for a shared CI machine; the target is 100 ms, the printed figure
  says whether it was met).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from ledger import percentile

from hexq.core.model import TaskQuery, TaskStatus
from hexq.core.services import SubmitRequest
from hexq.functions.bootstrap import Container, bootstrap
from hexq.functions.settings import Settings

if TYPE_CHECKING:
    from tests.integration.conftest import Proc

A_TASKS, B_TASKS = 5000, 20
SLEEP = {"seconds": 0.005}
WORKERS, CONCURRENCY = 2, 10
BULK = 1000
TARGET_P99, BOUND_P99 = 0.100, 1.0
TIMEOUT = 30.0


def test_a_backlog_does_not_hold_up_another_tenant(backend_url: str, hexq: Callable[..., Proc]) -> None:
    workers = [hexq("worker", "--backend", backend_url, "--concurrency", str(CONCURRENCY), "--queues", "default")
               for _ in range(WORKERS)]
    try:
        report = asyncio.run(_run(backend_url, workers))
    finally:
        for worker in workers:
            worker.close()
    print("\nfairness load:", json.dumps(report))
    assert report["b_succeeded"] == B_TASKS
    # A's backlog was there when B arrived, and most of it was still queued once B's tasks had all started.
    assert report["a_queued_at_b_submit"] >= A_TASKS // 2
    assert report["a_started_after_b_last_start"] >= A_TASKS // 2
    assert report["b_start_p99_s"] < BOUND_P99


async def _run(url: str, workers: list[Proc]) -> dict[str, object]:
    container = bootstrap(Settings(backend_url=url))
    try:
        await _until(lambda: _registered(container, len(workers)), workers, "the workers to register")
        for _ in range(A_TASKS // BULK):
            await container.tasks.submit_bulk([SubmitRequest(type="sleep", payload=SLEEP, tenant="a")] * BULK)
        a_queued = (await container.backend.stats()).by_status[TaskStatus.QUEUED]
        b = await container.tasks.submit_bulk([SubmitRequest(type="sleep", payload=SLEEP, tenant="b")] * B_TASKS)
        b_ids = [s.task.id for s in b]
        await _until(lambda: _finished(container, b_ids), workers, "tenant b's tasks to finish")
        b_tasks = [task for task in [await container.backend.get(i) for i in b_ids] if task is not None]
        latencies = sorted((t.started_at or 0.0) - t.created_at for t in b_tasks)
        last_start = max(t.started_at or 0.0 for t in b_tasks)
        a_left = (await container.backend.stats()).by_status[TaskStatus.QUEUED]
        return {"backend": url.split(":")[0], "a_tasks": A_TASKS, "b_tasks": B_TASKS, "task_s": SLEEP["seconds"],
                "workers": f"{WORKERS}x{CONCURRENCY}", "a_queued_at_b_submit": a_queued,
                "a_started_after_b_last_start": a_left + await _started_after(container, last_start),
                "b_succeeded": sum(t.status is TaskStatus.SUCCEEDED for t in b_tasks),
                "b_start_p50_s": round(percentile(latencies, 50), 4),
                "b_start_p99_s": round(percentile(latencies, 99), 4),
                "b_start_max_s": round(latencies[-1], 4), "target_p99_s": TARGET_P99,
                "target_met": percentile(latencies, 99) < TARGET_P99}
    finally:
        await container.backend.close()


async def _registered(container: Container, n: int) -> bool:
    return len(await container.backend.workers()) >= n


async def _finished(container: Container, ids: list[str]) -> bool:
    for task_id in ids:
        task = await container.backend.get(task_id)
        if task is None or task.status in (TaskStatus.QUEUED, TaskStatus.RUNNING, TaskStatus.SCHEDULED):
            return False
    return True


async def _started_after(container: Container, moment: float) -> int:
    """Tenant a's tasks that are running now and started after `moment` (the rest of its backlog is queued)."""
    running = await container.backend.query(TaskQuery(status=TaskStatus.RUNNING, limit=1000))
    return sum(1 for t in running.items if t.tenant == "a" and (t.started_at or 0.0) > moment)


async def _until(done: Callable[[], Awaitable[bool]], workers: list[Proc], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if await done():
            return
        for worker in workers:
            assert worker.process.poll() is None, f"a worker exited:\n{worker.log()[-3000:]}"
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}:\n{workers[0].log()[-3000:]}")

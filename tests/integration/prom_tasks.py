"""Task types for tests/integration/test_prometheus_live.py: one of each outcome a hexq dashboard shows.
Load with HEXQ_TASKS=hexq.functions.examples,tests.integration.prom_tasks (the repo root on PYTHONPATH).

    prom_flaky   fails its first attempt, succeeds on the retry (0.1 s later)
    prom_doomed  always fails: dead after 2 attempts
    prom_stall   first attempt blocks its worker's event loop for {"seconds"} (default 4) — longer than
                 the lease, so no heartbeat goes out: the poller recovers the lease, the task runs again
                 elsewhere, and the stalled worker's settle is refused by fencing (status `stale`)
"""

from __future__ import annotations

import time
from typing import Any

from hexq.core.context import current_task
from hexq.core.registry import task
from hexq.core.retry import RetryPolicy

FAST_RETRY = RetryPolicy(base=0.1, cap=0.2, jitter=0.0)


@task("prom_flaky", max_attempts=3, retry=FAST_RETRY)
def prom_flaky(payload: dict[str, Any]) -> dict[str, int]:
    attempt = current_task().attempts
    if attempt < 2:
        raise RuntimeError(f"flaky: attempt {attempt} fails")
    return {"attempt": attempt}


@task("prom_doomed", max_attempts=2, retry=FAST_RETRY)
def prom_doomed(payload: dict[str, Any]) -> None:
    raise RuntimeError("doomed: every attempt fails")


@task("prom_stall", max_attempts=3, retry=FAST_RETRY, timeout=60.0)
async def prom_stall(payload: dict[str, Any]) -> dict[str, int]:
    attempt = current_task().attempts
    if attempt == 1:
        time.sleep(float(payload.get("seconds", 4)))  # noqa: ASYNC251 - blocking the loop is the point
    return {"attempt": attempt}

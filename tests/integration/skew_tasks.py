"""Task module for the clock-skew test: `probe` records when each attempt starts, on the real clock.

Every attempt appends "n attempt monotonic" to the file named by HEXQ_TEST_LEDGER. CLOCK_MONOTONIC
is one system-wide clock on Linux and faketime leaves it alone (FAKETIME_DONT_FAKE_MONOTONIC=1), so
the test can compare these with its own readings while the worker's wall clock is an hour off.
Payload: {"n": int, "fail_first": bool (the first attempt raises), "sleep": seconds}.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from hexq.core.context import current_task
from hexq.core.registry import task
from hexq.core.retry import RetryPolicy
from tests.integration.ledger_tasks import LEDGER_ENV, append_line

BACKOFF = 3.0


@task("probe", max_attempts=3, timeout=30.0, retry=RetryPolicy(base=BACKOFF, cap=BACKOFF, jitter=0.0))
async def probe(payload: dict[str, Any]) -> dict[str, int]:
    attempt = current_task().attempts
    append_line(os.environ[LEDGER_ENV], f"{payload['n']} {attempt} {time.monotonic():.6f}\n")
    if payload.get("fail_first") and attempt == 1:
        raise RuntimeError("the first attempt fails, so the task is retried after its backoff")
    await asyncio.sleep(float(payload.get("sleep", 0)))
    return {"attempt": attempt}

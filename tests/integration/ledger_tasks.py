"""Task module for the crash tests: `ledger` sleeps a little, then appends one line to a ledger file.

Load it with HEXQ_TASKS=hexq.functions.examples,tests.integration.ledger_tasks (the repo root must be on
PYTHONPATH). Every execution appends, with one O_APPEND write of its own, the line

    n task_id attempt pid t_start t_end

to the file named by HEXQ_TEST_LEDGER: ground truth that lives outside the backend, like a Jepsen
client history. `n` is the payload's unique number, which is what the checker keys on (a handler
only receives its payload); task_id and attempt come from hexq.core.context.current_task().
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from hexq.core.context import current_task
from hexq.core.registry import task

LEDGER_ENV = "HEXQ_TEST_LEDGER"
MAX_MS = 1000


def _args(payload: dict[str, Any]) -> tuple[int, float]:
    n, ms = payload.get("n"), payload.get("ms", 0)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"ledger: n must be an integer >= 0, not {n!r}")
    if isinstance(ms, bool) or not isinstance(ms, int | float) or not 0 <= ms <= MAX_MS:
        raise ValueError(f"ledger: ms must be a number 0 to {MAX_MS}, not {ms!r}")
    return n, float(ms)


def append_line(path: str, line: str) -> None:
    """One write on a descriptor opened with O_APPEND: concurrent writers never interleave a line."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@task("ledger", timeout=30.0, validate=_args)
async def ledger(payload: dict[str, Any]) -> dict[str, int]:
    """{"n": unique int, "ms": 0..1000}: sleep ms, then record this execution in the ledger file."""
    n, ms = _args(payload)
    running = current_task()  # the worker binds it; no need to thread ids through the payload
    task_id, attempt = running.id, running.attempts
    path = os.environ.get(LEDGER_ENV)
    if not path:
        raise RuntimeError(f"{LEDGER_ENV} is not set: the ledger task has nowhere to record")
    started = time.time()
    await asyncio.sleep(ms / 1000)
    append_line(path, f"{n} {task_id} {attempt} {os.getpid()} {started:.6f} {time.time():.6f}\n")
    return {"n": n}

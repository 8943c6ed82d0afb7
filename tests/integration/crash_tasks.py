"""Task types for tests/integration/test_pool_isolation.py: a healthy sleeper, and two that kill the
worker process running them. Load with HEXQ_TASKS=hexq.functions.examples,tests.integration.crash_tasks (the
repo root must be on PYTHONPATH).

    crash_sleep  {"seconds": 0..60}: sleeps, then returns the pid of the process that ran it
    crash_exit   {}: os._exit(1) — the process dies with no cleanup, as on a fatal error in C code
    crash_segv   {}: SIGSEGV to its own process, which dies by the signal (as a segfaulting extension would)

Both crash types allow 3 attempts and retry quickly, so a poison task is dead within a few leases.
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import time
from typing import Any

from hexq.core.registry import task
from hexq.core.retry import RetryPolicy

FAST_RETRY = RetryPolicy(base=0.2, cap=1.0, jitter=0.0)
CRASH_ATTEMPTS = 3


@task("crash_sleep", timeout=90.0)
async def crash_sleep(payload: dict[str, Any]) -> dict[str, int]:
    await asyncio.sleep(min(60.0, float(payload.get("seconds", 1))))
    return {"pid": os.getpid()}


@task("crash_exit", max_attempts=CRASH_ATTEMPTS, retry=FAST_RETRY)
def crash_exit(payload: dict[str, Any]) -> None:
    os._exit(1)


@task("crash_segv", max_attempts=CRASH_ATTEMPTS, retry=FAST_RETRY)
def crash_segv(payload: dict[str, Any]) -> None:
    """Sync handlers run in a worker thread, which cannot reset signal handlers; refuse to run if Python
    handles SIGSEGV (that would turn the crash into something else). faulthandler is fine: it prints the
    traceback and re-raises the signal with the default action."""
    if signal.getsignal(signal.SIGSEGV) not in (signal.SIG_DFL, None):
        raise RuntimeError(f"SIGSEGV is handled in Python ({signal.getsignal(signal.SIGSEGV)!r}): no crash")
    _, hard = resource.getrlimit(resource.RLIMIT_CORE)
    resource.setrlimit(resource.RLIMIT_CORE, (0, hard))  # no core file (the default action dumps one)
    os.kill(os.getpid(), signal.SIGSEGV)
    time.sleep(5.0)  # the default action kills the process before this returns
    raise RuntimeError("still alive 5 s after SIGSEGV")

"""Task types for the reliability tests (tests/reliability). Load with
HEXQ_TASKS=hexq.functions.examples,tests.integration.ledger_tasks,tests.reliability.poison_tasks (repo root on
PYTHONPATH). Every execution appends one line `n task_id attempt pid t_start t_end` to HEXQ_TEST_LEDGER
(the same format as tests/integration/ledger_tasks.py, so its checker reads it).

    rel_sleep    {"n", "seconds" 0..60, "first": 0..60}: sleep ("first" on attempt 1, if given), then record
    rel_raise    {"n"}: records, then always raises (poison T12a)
    rel_exit     {"n"}: records, then os._exit(1) kills its worker process (poison T12b; queue "poison")
    rel_segv     {"n"}: records, then sends its own process SIGSEGV, which kills it by the signal (poison T12c;
                 queue "poison-segv")
    rel_timeout  {"n", "seconds"}: sleeps past its 1 s timeout; the cancellation is recorded (T13)
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import time
from typing import Any

from hexq.core.context import current_task
from hexq.core.registry import task
from hexq.core.retry import RetryPolicy
from tests.integration.ledger_tasks import LEDGER_ENV, append_line

# Short, deterministic backoff: retries come quickly (no jitter) so the tests stay short.
FAST_RETRY = RetryPolicy(base=0.2, cap=1.0, jitter=0.0)
TIMEOUT = 1.0


def _record(payload: dict[str, Any], started: float, *, path_env: str = LEDGER_ENV) -> None:
    running = current_task()
    path = os.environ.get(path_env)
    if not path:
        raise RuntimeError(f"{path_env} is not set")
    append_line(path, f"{int(payload['n'])} {running.id} {running.attempts} {os.getpid()} "
                      f"{started:.6f} {time.time():.6f}\n")


@task("rel_sleep", timeout=90.0)
async def rel_sleep(payload: dict[str, Any]) -> dict[str, int]:
    started = time.time()
    seconds = payload["first"] if "first" in payload and current_task().attempts == 1 else payload.get("seconds", 1)
    await asyncio.sleep(min(60.0, float(seconds)))
    _record(payload, started)
    return {"n": int(payload["n"])}


@task("rel_raise", max_attempts=3, retry=FAST_RETRY)
async def rel_raise(payload: dict[str, Any]) -> None:
    _record(payload, time.time())
    raise RuntimeError(f"poison {payload['n']}")


@task("rel_exit", max_attempts=3, retry=FAST_RETRY, queue="poison")
def rel_exit(payload: dict[str, Any]) -> None:
    _record(payload, time.time())
    os._exit(1)


@task("rel_segv", max_attempts=3, retry=FAST_RETRY, queue="poison-segv")
def rel_segv(payload: dict[str, Any]) -> None:
    """A crash by signal, as a segfaulting C extension would. It runs in a worker thread (sync handlers go
    through asyncio.to_thread), so it cannot reset signal handlers itself (only the main thread may); it
    refuses to run if Python handles SIGSEGV, since that would turn the crash into something else. With
    faulthandler enabled (PYTHONFAULTHANDLER, -X faulthandler) the traceback is printed and the signal
    re-raised with the default action, so the process still dies by SIGSEGV (T12 runs it that way)."""
    if signal.getsignal(signal.SIGSEGV) not in (signal.SIG_DFL, None):
        raise RuntimeError(f"SIGSEGV is handled in Python ({signal.getsignal(signal.SIGSEGV)!r}): no crash")
    _record(payload, time.time())
    _, hard = resource.getrlimit(resource.RLIMIT_CORE)
    resource.setrlimit(resource.RLIMIT_CORE, (0, hard))  # no core file (the default action dumps one)
    os.kill(os.getpid(), signal.SIGSEGV)
    time.sleep(5.0)  # the default action kills the process before this returns
    raise RuntimeError("still alive 5 s after SIGSEGV")


@task("rel_timeout", timeout=TIMEOUT, max_attempts=3, retry=FAST_RETRY)
async def rel_timeout(payload: dict[str, Any]) -> None:
    started = time.time()
    try:
        await asyncio.sleep(float(payload.get("seconds", 10)))
    except asyncio.CancelledError:
        _record(payload, started)  # t_end is the moment the handler was cancelled
        raise
    _record(payload, started)

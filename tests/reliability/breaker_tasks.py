"""Task types for the circuit breaker and Retry fault tests (tests/reliability/test_breaker_outage.py). Every execution
appends `n task_id attempt pid t_start t_end` to HEXQ_TEST_LEDGER, as the other reliability tasks do.

    rel_downstream  {"n"}: fails with ConnectionError while the file HEXQ_TEST_DOWN names exists, else succeeds.
                    Its breaker opens after 3 consecutive failures and lets a probe through 1 s after opening.
    rel_slow_down   {"n"}: raises Retry(after=0.2) on its first two runs (counted in HEXQ_TEST_DOWN's folder),
                    then succeeds: a downstream that said "429, slow down" twice.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from hexq.core.breaker import Breaker
from hexq.core.context import current_task
from hexq.core.registry import task
from hexq.core.retry import Retry, RetryPolicy
from tests.integration.ledger_tasks import LEDGER_ENV, append_line

DOWN_ENV = "HEXQ_TEST_DOWN"
BREAKER = Breaker(failures=3, reset=1.0)


def _record(payload: dict[str, Any], started: float) -> None:
    running = current_task()
    append_line(os.environ[LEDGER_ENV], f"{int(payload['n'])} {running.id} {running.attempts} {os.getpid()} "
                                        f"{started:.6f} {time.time():.6f}\n")


@task("rel_downstream", max_attempts=5, retry=RetryPolicy(base=0.2, cap=1.0, jitter=0.0), breaker=BREAKER)
def downstream(payload: dict[str, Any]) -> int:
    started = time.time()
    time.sleep(0.01)  # a call to the downstream
    _record(payload, started)
    if Path(os.environ[DOWN_ENV]).exists():
        raise ConnectionError("downstream unavailable")
    return int(payload["n"])


@task("rel_slow_down", max_attempts=1)
def slow_down(payload: dict[str, Any]) -> int:
    started = time.time()
    _record(payload, started)
    runs = Path(os.environ[DOWN_ENV]).parent / f"slow-{int(payload['n'])}"
    with runs.open("a") as file:  # one process runs a given task at a time: no lock needed
        file.write(".")
    if runs.stat().st_size <= 2:
        raise Retry(after=0.2, reason="429 Too Many Requests")
    return int(payload["n"])

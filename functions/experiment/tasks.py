"""Task types the experiments run, with retry policies small enough to watch retries within seconds.

Workers load this module next to hexq.functions.examples (--tasks). Failures are decided by a hash of
(seed, task index, attempt number), not by random(): a run with the same --seed fails the same attempts
on every backend and every machine, so the attempts histogram of a test run is reproducible while each
attempt still fails with the configured probability.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from typing import Any

from hexq.core.context import current_task
from hexq.core.registry import task
from hexq.core.retry import RetryPolicy

# retries: 5 attempts, backoff min(1, 0.1 * 2**(n-1)) with half of it jittered: at most 1.5 s of backoff in all.
FLAKY_RETRY = RetryPolicy(base=0.1, cap=1.0, jitter=0.5)
FLAKY_ATTEMPTS = 5
# the outage: longer backoff (at most 0.25+0.5+1+2+4 = 7.75 s over six attempts) so tasks can outlive it.
OUTAGE_RETRY = RetryPolicy(base=0.25, cap=4.0, jitter=0.5)
OUTAGE_ATTEMPTS = 6
# recovery: a lost task is retried almost at once, so what is measured is the lease and the poller.
WORK_RETRY = RetryPolicy(base=0.05, cap=0.05, jitter=0.0)


class Failed(RuntimeError):
    """An attempt failed on purpose."""


def draw(seed: int, index: int, attempt: int) -> float:
    """A uniform number in [0, 1) fixed by (seed, index, attempt)."""
    digest = hashlib.blake2b(f"{seed}:{index}:{attempt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _fail_if(payload: dict[str, Any]) -> None:
    attempt = current_task().attempts
    window = payload.get("outage")
    if isinstance(window, list) and len(window) == 2 and window[0] <= time.time() < window[1]:
        raise Failed("downstream outage")
    if draw(int(payload.get("seed", 0)), int(payload.get("i", 0)), attempt) < float(payload.get("p", 0.0)):
        raise Failed(f"attempt {attempt} failed on purpose (p={payload.get('p')})")


@task("experiment.flaky", max_attempts=FLAKY_ATTEMPTS, retry=FLAKY_RETRY, timeout=30)
async def flaky(payload: dict[str, Any]) -> None:
    """{"p": failure probability, "seed": n, "i": index, "outage": [from, to] (epoch seconds, optional)}."""
    _fail_if(payload)


@task("experiment.outage", max_attempts=OUTAGE_ATTEMPTS, retry=OUTAGE_RETRY, timeout=30)
async def outage(payload: dict[str, Any]) -> None:
    """As experiment.flaky, with the longer backoff of OUTAGE_RETRY."""
    _fail_if(payload)


@task("experiment.work", retry=WORK_RETRY, max_attempts=5, timeout=60)
async def work(payload: dict[str, Any]) -> dict[str, int]:
    """{"seconds": s, "ledger": path, "i": index}: sleep, then append "<index> <pid>" to the ledger file, so a
    run can count how many times each task ran to completion (duplicates), whoever settled it."""
    await asyncio.sleep(float(payload.get("seconds", 0.0)))
    ledger = payload.get("ledger")
    if isinstance(ledger, str):
        line = f"{payload.get('i')} {os.getpid()}\n".encode()
        fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)  # one write of a short line to an O_APPEND file: lines never interleave
        finally:
            os.close(fd)
    return {"pid": os.getpid()}

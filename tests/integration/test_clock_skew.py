"""One clock (issue #9): real hexq processes whose clocks are an hour off, against a real Redis.

`hexq submit`, `hexq worker` and `hexq poller` run with Debian's libfaketime preloaded (wall clock +1 h or
-1 h; the monotonic clock left alone). Redis decides every due time with its own TIME, so:

- a delay is not early (an API behind by an hour once made a 3 s delay due at once) nor an hour late;
- a retry honours its backoff (a worker behind by an hour retried at once; ahead, an hour late);
- no lease is taken early (a poller ahead by an hour must not reclaim a task that heartbeats);
- every stored timestamp (created, due, started, finished) is the server's, not a process's.

Ground truth for "when did the attempt start" is the handler's CLOCK_MONOTONIC reading, which is
system-wide and not faked, compared with the test's own (tests/integration/skew_tasks.py).
"""

from __future__ import annotations

import asyncio
import glob
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from hexq.adapters.redis import RedisBackend
from hexq.core.model import Task, TaskStatus
from tests.integration.skew_tasks import BACKOFF

if TYPE_CHECKING:
    from tests.integration.conftest import Proc

pytestmark = [pytest.mark.slow, pytest.mark.redis]

REPO = Path(__file__).resolve().parents[2]
DELAY = 3.0
LONG = 4.0  # a task that runs for LONG seconds under a LEASE-second lease, kept by heartbeats
LEASE = 1.5
SLACK = 1.0  # how far the test's wall clock may be from the server's: the same host, so milliseconds
DONE_TIMEOUT = 40.0


@pytest.fixture
def libfaketime() -> str:
    """Debian's libfaketime, preloaded into the hexq processes themselves. (The `faketime` command would
    fork them as its children, and a SIGTERM to it would leave them running.)"""
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1"))
    if not found:
        if os.environ.get("CI") == "true":
            pytest.fail("libfaketime is required in CI (Debian's faketime package; .ci/run installs it)")
        pytest.skip("libfaketime is not installed (apt-get install faketime)")
    return found[0]


@pytest.fixture
def redis_url_flushed(redis_url: str) -> Iterator[str]:
    import redis_server

    with redis_server.flushed(redis_url):
        yield redis_url


def ledger_lines(path: Path) -> dict[int, list[tuple[int, float]]]:
    """n -> [(attempt, monotonic start)], in order."""
    runs: dict[int, list[tuple[int, float]]] = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        n, attempt, started = line.split()
        runs.setdefault(int(n), []).append((int(attempt), float(started)))
    return runs


def wall_clock(env: dict[str, str]) -> float:
    """time.time() as a Python process started with `env` reads it."""
    shown = subprocess.run([sys.executable, "-c", "import time; print(time.time())"], env={**os.environ, **env},
                           capture_output=True, text=True, check=True, timeout=30)
    return float(shown.stdout)


async def wait_finished(backend: RedisBackend, ids: list[str]) -> dict[str, Task]:
    deadline = time.monotonic() + DONE_TIMEOUT
    while True:
        tasks = {task_id: await backend.get(task_id) for task_id in ids}
        if all(t is not None and t.is_terminal for t in tasks.values()):
            return {task_id: t for task_id, t in tasks.items() if t is not None}
        if time.monotonic() > deadline:
            pytest.fail(f"tasks did not finish in {DONE_TIMEOUT:g}s: {tasks}")
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("skew", ["+1h", "-1h"], ids=["ahead", "behind"])
async def test_processes_with_skewed_clocks_keep_the_servers_time(
        hexq: Callable[..., Proc], redis_url_flushed: str, libfaketime: str, tmp_path: Path, skew: str) -> None:
    url = redis_url_flushed
    ledger = tmp_path / "ledger.txt"
    env = {"HEXQ_BACKEND": url, "HEXQ_TASKS": "hexq.functions.examples,tests.integration.skew_tasks",
           "HEXQ_LEASE": f"{LEASE:g}", "HEXQ_TEST_LEDGER": str(ledger),
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
           # Only these processes' wall clock is off; CLOCK_MONOTONIC stays the system's.
           "LD_PRELOAD": libfaketime, "FAKETIME": skew, "FAKETIME_DONT_FAKE_MONOTONIC": "1"}

    def submit(payload: dict[str, object], *extra: str) -> str:
        proc = hexq("submit", "probe", json.dumps(payload), *extra, env=env)
        assert proc.process.wait(30) == 0, proc.log()
        return str(json.loads(proc.output())["id"])

    wall_before, mono_before = time.time(), time.monotonic()
    delayed = submit({"n": 1}, "--delay", f"{DELAY:g}")  # stored (and its delay started) after mono_before
    retried = submit({"n": 2, "fail_first": True})
    leased = submit({"n": 3, "sleep": LONG})
    wall_submitted = time.time()
    # The children's clocks really are an hour off (else the test would prove nothing).
    assert abs(await asyncio.to_thread(wall_clock, env) - time.time()) > 3000

    worker = hexq("worker", env=env)
    poller = hexq("poller", env=env)
    backend = RedisBackend.from_url(url)
    try:
        tasks = await wait_finished(backend, [delayed, retried, leased])
    finally:
        await backend.close()
        worker.terminate()
        poller.terminate()
    wall_after = time.time()
    runs = ledger_lines(ledger)

    # Every stored time is the server's (the same host as the test: its clock), not an hour off.
    for task in tasks.values():
        assert task.status is TaskStatus.SUCCEEDED, (task, worker.log()[-3000:])
        for name in ("created_at", "run_at", "started_at", "finished_at"):
            value = getattr(task, name)
            assert wall_before - SLACK <= value <= wall_after + SLACK, (name, value, wall_before, wall_after)
        assert wall_before - SLACK <= task.created_at <= wall_submitted + SLACK

    # The delay: due DELAY after the server stored it, and not started before that by the real clock.
    first = tasks[delayed]
    assert first.run_at == pytest.approx(first.created_at + DELAY, abs=1e-6)
    assert first.started_at is not None and first.started_at >= first.run_at
    [(attempt, started)] = runs[1]
    assert started - mono_before >= DELAY, "the delayed task started early"
    assert started - mono_before < DELAY + 10, "the delayed task started far too late"

    # The retry: the second attempt started at least the backoff after the first, by the real clock.
    second = tasks[retried]
    assert second.attempts == 2
    [(a1, t1), (a2, t2)] = runs[2]
    assert (a1, a2) == (1, 2)
    assert BACKOFF - 0.05 <= t2 - t1 < BACKOFF + 10, f"retry after {t2 - t1:.3f}s, backoff {BACKOFF}s"

    # The long task kept its lease: one attempt, one execution, although the poller's clock is ahead/behind.
    third = tasks[leased]
    assert third.attempts == 1 and third.error is None
    assert [attempt for attempt, _ in runs[3]] == [1]

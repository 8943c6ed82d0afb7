"""An idle `hexq serve` starts a submitted task at once, not at its poller's next tick.

The poller ticks every 30 s here, so a task that is done within 10 s of its submit can only have been
started by the wake path: a warm invocation waiting on the backend (woken through its pipe on SQLite,
blocked on the server on Redis), or, with HEXQ_WARM=0, the submit waking the poller. Real processes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

if TYPE_CHECKING:
    from tests.integration.conftest import Served

SLOW_TICK = {"HEXQ_POLL_INTERVAL": "30"}
QUIET = 2.0  # seconds with nothing submitted: longer than the warm invocation's idle wait (0.5 s here)
DEADLINE = 10.0  # from submit to done; the next tick is 30 s away


def run_one(client: httpx.Client) -> dict[str, Any]:
    """Submit an echo task and wait for it; fail unless it is done within DEADLINE."""
    response = client.post("/v1/tasks", json={"type": "echo", "payload": {}})
    assert response.status_code == 202, response.text
    task_id = response.json()["id"]
    deadline = time.monotonic() + DEADLINE
    while (task := client.get(f"/v1/tasks/{task_id}").json())["status"] != "succeeded":
        if time.monotonic() > deadline:
            pytest.fail(f"task not done {DEADLINE:g}s after its submit (the tick is 30 s away): {task}")
        time.sleep(0.02)
    return task


@pytest.mark.slow
def test_an_idle_serve_starts_each_submitted_task_at_once(serve: Callable[..., Served], backend_url: str) -> None:
    served = serve(backend=backend_url, env=SLOW_TICK)
    with httpx.Client(base_url=served.url, trust_env=False, timeout=10.0) as client:
        run_one(client)  # the first may wait for the pool's first process to start (its cold start)
        for _ in range(3):
            time.sleep(QUIET)
            task = run_one(client)
            assert str(served.proc.process.pid) not in task["worker_id"]  # a pool process ran it
    assert served.proc.terminate(15) == 0


@pytest.mark.slow
def test_without_warm_invocations_a_submit_wakes_the_poller(serve: Callable[..., Served]) -> None:
    served = serve(env={**SLOW_TICK, "HEXQ_WARM": "0"})
    with httpx.Client(base_url=served.url, trust_env=False, timeout=10.0) as client:
        for _ in range(2):
            time.sleep(QUIET)
            run_one(client)
    assert served.proc.terminate(15) == 0


@pytest.mark.slow
def test_an_idle_serve_does_not_burn_cpu(serve: Callable[..., Served]) -> None:
    served = serve(env={"HEXQ_POLL_INTERVAL": "0.5", "HEXQ_IDLE_WAIT": "1"})  # the defaults
    with httpx.Client(base_url=served.url, trust_env=False, timeout=10.0) as client:
        run_one(client)  # the pool's process is up, and a warm invocation waits
    time.sleep(2.0)
    pids = family(served.proc.process.pid)
    before, started = cpu_seconds(pids), time.monotonic()
    time.sleep(5.0)
    share = (cpu_seconds(pids) - before) / (time.monotonic() - started)
    print(f"idle hexq serve: {100 * share:.2f}% of one core over 5 s ({len(pids)} processes)")
    assert share < 0.10  # generous: measured about 1 %; a polling loop gone wrong takes a whole core
    assert served.proc.terminate(15) == 0


def family(pid: int) -> list[int]:
    """`pid` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        found.append(current := todo.pop())
        todo.extend(children.get(current, []))
    return found


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks
    return total / os.sysconf("SC_CLK_TCK")

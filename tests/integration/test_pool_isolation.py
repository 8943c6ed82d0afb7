"""`hexq serve`'s worker processes are isolated: one that dies (a poison task calling os._exit, or a
segfault) takes down only its own invocation. Tasks running in the other processes carry on untouched
(no release, no extra attempt), and the dead process's slot is free for new work at once.

Real `hexq serve` on SQLite, 2 worker processes running one task at a time each; task types in
tests/integration/crash_tasks.py.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

if TYPE_CHECKING:
    from tests.integration.conftest import Served

REPO = Path(__file__).resolve().parents[2]
ENV = {"HEXQ_TASKS": "hexq.functions.examples,tests.integration.crash_tasks", "HEXQ_CONCURRENCY": "1",
       "HEXQ_LEASE": "2", "HEXQ_GRACE": "1",
       "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)}
HEALTHY_SECONDS = 10  # long enough that the crash, and a new process in the freed slot, fall inside it
DEADLINE = 40.0  # generous: everything normally settles within ~15 s of the crash


def wait_for(check: Callable[[], Any], what: str, timeout: float = DEADLINE) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)
    return value


def submit(client: httpx.Client, task_type: str, payload: dict[str, Any], **fields: Any) -> str:
    response = client.post("/v1/tasks", json={"type": task_type, "payload": payload, **fields})
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def get(client: httpx.Client, task_id: str) -> dict[str, Any]:
    task: dict[str, Any] = client.get(f"/v1/tasks/{task_id}").json()
    return task


def terminal(client: httpx.Client, task_id: str) -> dict[str, Any] | None:
    task = get(client, task_id)
    return task if task["status"] in ("succeeded", "dead", "cancelled") else None


def worker_pid(task: dict[str, Any]) -> int:
    return int(str(task["worker_id"]).rsplit(":", 1)[1])


@pytest.mark.slow
@pytest.mark.timeout(90)
# Two of the four combinations, to keep CI short: each crash kind and each pool state is met once.
@pytest.mark.parametrize(("poison", "warm"), [("crash_exit", False), ("crash_segv", True)],
                         ids=["exit-cold", "segv-warm"])
def test_a_crashing_worker_process_leaves_the_others_alone(serve: Callable[..., Served], poison: str,
                                                           warm: bool) -> None:
    """cold: the poison task is the first one the second process runs; warm: both processes have run a
    task before (a process pool that kills its other children when one dies shows it only then)."""
    served = serve("--workers", "2", env=ENV)
    with httpx.Client(base_url=served.url, trust_env=False, timeout=10.0) as client:
        if warm:
            warmed = [submit(client, "crash_sleep", {"seconds": 2}) for _ in range(2)]
            pids = {wait_for(lambda i=i: terminal(client, i), "the warm-up tasks")["result"]["pid"] for i in warmed}
            assert len(pids) == 2
            time.sleep(1.0)  # their invocations end after idle_wait (0.5 s); the processes stay
        healthy = submit(client, "crash_sleep", {"seconds": HEALTHY_SECONDS})
        running = wait_for(lambda: (t := get(client, healthy))["status"] == "running" and t, "the healthy task to run")
        healthy_pid = worker_pid(running)

        bad = submit(client, poison, {})
        wait_for(lambda: get(client, bad)["attempts"] >= 1, "the poison task to be claimed")
        # The poison task's process is dying or dead; its slot must come free for this one while the
        # healthy task still holds the other slot (cap 2, one task per process).
        later = submit(client, "crash_sleep", {"seconds": 0.5}, priority="high")

        done_later = wait_for(lambda: terminal(client, later), "the task submitted after the crash")
        done_healthy = wait_for(lambda: terminal(client, healthy), "the healthy task")
        done_bad = wait_for(lambda: terminal(client, bad), "the poison task to die")

    assert (done_healthy["status"], done_healthy["attempts"], done_healthy["error"]) == ("succeeded", 1, None)
    assert done_healthy["result"] == {"pid": healthy_pid}  # ran start to end in the one process
    assert (done_bad["status"], done_bad["attempts"]) == ("dead", 3)
    assert (done_later["status"], done_later["attempts"]) == ("succeeded", 1)
    assert done_later["result"]["pid"] != healthy_pid
    # The slot of the dead process was reused while the healthy task was still running: had it stayed
    # counted busy, the later task could only have started after the healthy one finished.
    assert done_later["started_at"] < done_healthy["finished_at"]

    assert served.proc.terminate(15) == 0  # the replaced processes shut down cleanly too
    assert "interrupted by worker shutdown" not in served.proc.log()


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_a_worker_process_killed_while_idle_is_replaced(serve: Callable[..., Served]) -> None:
    served = serve("--workers", "2", env=ENV)
    with httpx.Client(base_url=served.url, trust_env=False, timeout=10.0) as client:
        first = submit(client, "crash_sleep", {"seconds": 0.1})
        pid = wait_for(lambda: terminal(client, first), "the first task")["result"]["pid"]
        time.sleep(1.5)  # its invocation ends after idle_wait (0.5 s); the process stays, idle
        os.kill(pid, signal.SIGKILL)

        ids = [submit(client, "crash_sleep", {"seconds": 0.2}) for _ in range(6)]
        done = [wait_for(lambda i=i: terminal(client, i), "the tasks submitted after the kill") for i in ids]

    assert [(t["status"], t["attempts"]) for t in done] == [("succeeded", 1)] * 6
    assert pid not in {t["result"]["pid"] for t in done}
    assert served.proc.terminate(15) == 0

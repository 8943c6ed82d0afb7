"""`hexq serve`, `hexq worker` and `hexq poller` as real processes; the worker loop and invokers in-process."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from hexq.core.model import Task, TaskStatus
from hexq.core.services import SubmitRequest
from hexq.functions.bootstrap import Container, bootstrap
from hexq.functions.invoker import InProcessInvoker, ProcessPoolInvoker
from hexq.functions.settings import Settings
from hexq.functions.worker import run_worker

if TYPE_CHECKING:
    from tests.integration.conftest import Proc, Served

PRIORITIES = ("low", "normal", "high", "critical")


def mixed_task(i: int) -> dict[str, Any]:
    kinds = [("echo", {"i": i}), ("checksum", {"data": f"task-{i}", "rounds": 50}), ("sleep", {"seconds": 0.01})]
    task_type, payload = kinds[i % 3]
    return {"type": task_type, "payload": payload, "priority": PRIORITIES[i % 4]}


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


def error_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if '"level": "error"' in line or "Traceback" in line]


def memory_container(**settings: Any) -> Container:
    return bootstrap(Settings(**{"backend_url": "memory://", "idle_wait": 0.05, **settings}))


async def submit_echoes(container: Container, n: int) -> list[str]:
    submitted = await container.tasks.submit_bulk([SubmitRequest("echo", {"i": i}) for i in range(n)])
    return [s.task.id for s in submitted]


# -- hexq serve, end to end ---------------------------------------------------------------------------
@pytest.mark.slow
def test_serve_runs_300_mixed_tasks_and_stops_cleanly(serve: Callable[..., Served]) -> None:
    served = serve("--workers", "2")
    assert served.proc.output().startswith(f"hexq serving on {served.url} (backend sqlite:///")
    with httpx.Client(base_url=served.url, trust_env=False, timeout=10.0) as client:
        sent = [mixed_task(i) for i in range(300)]
        ids = []
        for body in sent:
            response = client.post("/v1/tasks", json=body)
            assert response.status_code == 202, response.text
            ids.append(response.json()["id"])

        def all_terminal() -> bool:
            counts: dict[str, int] = client.get("/v1/stats").json()["by_status"]
            return sum(counts[s] for s in ("succeeded", "dead", "cancelled")) >= 300

        wait_until(all_terminal, 90, "300 tasks to finish")
        tasks = [client.get(f"/v1/tasks/{task_id}").json() for task_id in ids]

    assert [t["status"] for t in tasks] == ["succeeded"] * 300
    for body, task in zip(sent, tasks, strict=True):
        assert task["priority"] == body["priority"]
        if task["type"] == "echo":
            assert task["result"] == body["payload"]
        elif task["type"] == "checksum":
            assert task["result"]["digest"] == _digest(body["payload"]["data"], 50)
    worker_pids = {t["worker_id"].rsplit(":", 1)[1] for t in tasks}
    assert str(served.proc.process.pid) not in worker_pids  # the work ran in the pool's processes
    assert served.proc.terminate(15) == 0
    assert error_lines(served.proc.log()) == []


@pytest.mark.slow
def test_sigterm_during_work_exits_0_and_strands_nothing(serve: Callable[..., Served]) -> None:
    served = serve("--workers", "1", env={"HEXQ_GRACE": "0.5", "HEXQ_CONCURRENCY": "4"})
    with httpx.Client(base_url=served.url, trust_env=False, timeout=10.0) as client:
        ids = [client.post("/v1/tasks", json={"type": "sleep", "payload": {"seconds": 20}}).json()["id"]
               for _ in range(6)]
        wait_until(lambda: client.get("/v1/stats").json()["by_status"]["running"] > 0, 30, "a running task")
    started = time.monotonic()
    assert served.proc.terminate(15) == 0
    assert time.monotonic() - started < 15

    tasks = asyncio.run(_tasks(f"sqlite:///{served.db}", ids))
    assert {t.status for t in tasks} == {TaskStatus.QUEUED}  # none stuck in running
    released = [t for t in tasks if t.attempts == 1]  # claimed, interrupted, handed back at once
    assert 1 <= len(released) <= 4 and all(t.worker_id is None for t in released)


def running_worker_pids(client: httpx.Client) -> set[int]:
    tasks = client.get("/v1/tasks", params={"status": "running"}).json()["tasks"]
    return {int(t["worker_id"].rsplit(":", 1)[1]) for t in tasks}


def gone(pid: int) -> bool:
    """Exited: no such process, or a zombie nobody reaped yet (an orphan's new parent may be slow to)."""
    try:
        os.kill(pid, 0)
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (ProcessLookupError, FileNotFoundError):
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


@pytest.mark.slow
def test_a_second_sigterm_exits_at_once_and_kills_the_workers(serve: Callable[..., Served]) -> None:
    served = serve("--workers", "2", env={"HEXQ_GRACE": "30"})
    with httpx.Client(base_url=served.url, trust_env=False, timeout=10.0) as client:
        for _ in range(4):
            client.post("/v1/tasks", json={"type": "sleep", "payload": {"seconds": 30}})
        wait_until(lambda: bool(running_worker_pids(client)), 30, "a running task")
        children = running_worker_pids(client)
    served.proc.process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    assert served.proc.terminate(5) == 128 + signal.SIGTERM
    wait_until(lambda: all(gone(pid) for pid in children), 5, "the pool's processes to be killed")


@pytest.mark.slow
def test_workers_of_a_killed_server_release_their_tasks_and_exit(serve: Callable[..., Served]) -> None:
    served = serve("--workers", "1", env={"HEXQ_GRACE": "0.3"})
    with httpx.Client(base_url=served.url, trust_env=False, timeout=10.0) as client:
        ids = [client.post("/v1/tasks", json={"type": "sleep", "payload": {"seconds": 30}}).json()["id"]
               for _ in range(2)]
        wait_until(lambda: bool(running_worker_pids(client)), 30, "a running task")
        children = running_worker_pids(client)
    served.proc.process.kill()  # no shutdown at all: the child notices it was orphaned
    served.proc.process.wait(5)
    wait_until(lambda: all(gone(pid) for pid in children), 10, "the orphaned worker to exit")
    tasks = asyncio.run(_tasks(f"sqlite:///{served.db}", ids))
    assert [(t.status, t.attempts) for t in tasks] == [(TaskStatus.QUEUED, 1)] * 2


@pytest.mark.slow
def test_released_tasks_finish_after_a_restart(serve: Callable[..., Served]) -> None:
    served = serve("--workers", "1", env={"HEXQ_GRACE": "0.2"})
    with httpx.Client(base_url=served.url, trust_env=False, timeout=10.0) as client:
        ids = [client.post("/v1/tasks", json={"type": "sleep", "payload": {"seconds": 2}}).json()["id"]
               for _ in range(3)]
        wait_until(lambda: client.get("/v1/stats").json()["by_status"]["running"] > 0, 30, "a running task")
    assert served.proc.terminate(15) == 0

    again = serve("--workers", "2")
    with httpx.Client(base_url=again.url, trust_env=False, timeout=10.0) as client:
        wait_until(lambda: client.get("/v1/stats").json()["by_status"]["succeeded"] == 3, 30, "the released tasks")
        assert all(client.get(f"/v1/tasks/{i}").json()["status"] == "succeeded" for i in ids)
    assert again.proc.terminate(15) == 0


@pytest.mark.slow
def test_serve_with_memory_runs_workers_in_process(serve: Callable[..., Served]) -> None:
    served = serve("--workers", "2", backend="memory://")
    assert "backend memory://, 2 workers" in served.proc.output()
    with httpx.Client(base_url=served.url, trust_env=False, timeout=10.0) as client:
        ids = [client.post("/v1/tasks", json=mixed_task(i)).json()["id"] for i in range(30)]
        wait_until(lambda: client.get("/v1/stats").json()["by_status"]["succeeded"] == 30, 30, "30 tasks")
        assert {client.get(f"/v1/tasks/{i}").json()["worker_id"].split(":")[1] for i in ids} == {
            str(served.proc.process.pid)}
    assert served.proc.terminate(15) == 0


@pytest.mark.slow
def test_worker_and_poller_commands(hexq: Callable[..., Proc], tmp_path: Path) -> None:
    backend = f"sqlite:///{tmp_path}/hexq.db"
    submit = hexq("submit", "fail", '{"probability": 0}', "--backend", backend, "--delay", "0.5")
    assert submit.process.wait(30) == 0
    task_id = json.loads(submit.output())["id"]
    worker = hexq("worker", "--backend", backend, "--concurrency", "2", "--queues", "default")
    poller = hexq("poller", "--backend", backend)  # promotes the delayed task for the worker

    wait_until(lambda: asyncio.run(_statuses(backend, [task_id])) == ["succeeded"], 30, "the delayed task")
    assert worker.terminate(15) == 0 and poller.terminate(15) == 0
    assert worker.output().startswith("hexq worker ") and "concurrency 2" in worker.output()
    assert error_lines(worker.log() + poller.log()) == []


# -- in-process pieces ----------------------------------------------------------------------------------
async def test_run_worker_runs_invocations_until_the_limit() -> None:
    container = memory_container()
    await submit_echoes(container, 25)
    reports = await run_worker(container, asyncio.Event(), worker_id="w1", max_invocations=2, signals=False)
    assert [r.worker_id for r in reports] == ["w1", "w1"]
    assert sum(r.succeeded for r in reports) == 25 and reports[-1].reason == "empty"


async def test_run_worker_stops_when_told() -> None:
    container = memory_container(idle_wait=0.5)
    stop = asyncio.Event()
    loop = asyncio.create_task(run_worker(container, stop, signals=False))
    await asyncio.sleep(0.1)
    await submit_echoes(container, 3)  # wakes the blocked claim at once
    await asyncio.sleep(0.1)
    stop.set()
    reports = await asyncio.wait_for(loop, 2.0)  # a claim blocked in idle_wait notices stop when it returns
    assert sum(r.succeeded for r in reports) == 3


async def test_in_process_invoker_respects_its_cap() -> None:
    container = memory_container(idle_wait=0.3)
    invoker = InProcessInvoker(container, cap=2)
    assert await invoker.trigger(5) == 2
    assert await invoker.trigger(5) == 0 and invoker.in_flight == 2
    await invoker.shutdown()
    assert invoker.in_flight == 0 and await invoker.trigger(1) == 0


async def test_poller_with_in_process_invoker_drains_the_backlog() -> None:
    container = memory_container(batch=5, workers=3)
    ids = await submit_echoes(container, 40)
    invoker = InProcessInvoker(container, cap=3)
    stop = asyncio.Event()
    polling = asyncio.create_task(container.poller(invoker).run(stop))
    for _ in range(100):
        if (await container.tasks.stats()).by_status[TaskStatus.SUCCEEDED] == 40:
            break
        await asyncio.sleep(0.05)
    stop.set()
    await polling
    await invoker.shutdown()
    assert {(await container.tasks.get(i)).status for i in ids} == {TaskStatus.SUCCEEDED}


@pytest.mark.slow
async def test_process_pool_invoker_runs_invocations_in_children(tmp_path: Path) -> None:
    settings = Settings(backend_url=f"sqlite:///{tmp_path}/hexq.db", idle_wait=0.3, grace=1.0)
    container = bootstrap(settings)
    invoker = ProcessPoolInvoker(settings, cap=2)
    try:
        ids = await submit_echoes(container, 20)
        assert await invoker.trigger(3) == 2
        assert await invoker.trigger(1) == 0
        for _ in range(300):
            if (await container.tasks.stats()).by_status[TaskStatus.SUCCEEDED] == 20:
                break
            await asyncio.sleep(0.05)
        tasks = [await container.tasks.get(i) for i in ids]
        assert {t.status for t in tasks} == {TaskStatus.SUCCEEDED}
    finally:
        started = time.monotonic()
        await asyncio.to_thread(invoker.shutdown)
        await container.backend.close()
    assert time.monotonic() - started < 10
    assert invoker.in_flight == 0 and await invoker.trigger(1) == 0


async def _tasks(backend: str, ids: list[str]) -> list[Task]:
    container = bootstrap(Settings(backend_url=backend))
    try:
        return [await container.tasks.get(i) for i in ids]
    finally:
        await container.backend.close()


async def _statuses(backend: str, ids: list[str]) -> list[str]:
    return [task.status.value for task in await _tasks(backend, ids)]


def _digest(data: str, rounds: int) -> str:
    digest = data.encode()
    for _ in range(rounds):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()


# -- the queues workers serve -------------------------------------------------------------------------
REPO = Path(__file__).resolve().parents[2]
IMAGES_ENV = {"HEXQ_TASKS": "hexq.functions.examples,tests.integration.queue_tasks",
              "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)}


def submit_json(client: httpx.Client, body: dict[str, Any]) -> str:
    response = client.post("/v1/tasks", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


@pytest.mark.slow
def test_serve_runs_a_task_type_declared_on_its_own_queue(serve: Callable[..., Served]) -> None:
    served = serve(env=IMAGES_ENV)
    assert "queues default,images)" in served.proc.output()
    with httpx.Client(base_url=served.url, trust_env=False, timeout=10.0) as client:
        task_id = submit_json(client, {"type": "resize"})
        wait_until(lambda: client.get(f"/v1/tasks/{task_id}").json()["status"] == "succeeded", 30, "the images task")
        assert client.get(f"/v1/tasks/{task_id}").json()["queue"] == "images"
    assert served.proc.terminate(15) == 0
    assert '"serving queues default,images"' in served.proc.log()


@pytest.mark.slow
def test_serve_with_named_queues_serves_only_those_and_says_so(serve: Callable[..., Served]) -> None:
    served = serve("--queues", "default", env=IMAGES_ENV)
    assert "queues default)" in served.proc.output()
    with httpx.Client(base_url=served.url, trust_env=False, timeout=10.0) as client:
        resize = submit_json(client, {"type": "resize"})
        echo = submit_json(client, {"type": "echo"})
        wait_until(lambda: client.get(f"/v1/tasks/{echo}").json()["status"] == "succeeded", 30, "the echo task")
        time.sleep(1.0)  # a worker that served images would have taken it long since
        assert client.get(f"/v1/tasks/{resize}").json()["status"] == "queued"
        assert client.get("/v1/stats").json()["queued"]["images"]["normal"] == 1
    assert served.proc.terminate(15) == 0


@pytest.mark.slow
def test_a_worker_warns_about_queued_tasks_it_does_not_serve(hexq: Callable[..., Proc], tmp_path: Path) -> None:
    backend = f"sqlite:///{tmp_path}/hexq.db"
    submit = hexq("submit", "resize", "--backend", backend, env=IMAGES_ENV)
    assert submit.process.wait(30) == 0, submit.log()
    task_id = json.loads(submit.output())["id"]

    narrow = hexq("worker", "--backend", backend, "--queues", "default", env=IMAGES_ENV)
    wait_until(lambda: "queue images has 1 queued task(s) that this worker does not serve" in narrow.log(), 30,
               "the start-up warning")
    assert "HEXQ_QUEUES (--queues) names only default" in narrow.log()
    assert narrow.terminate(15) == 0
    assert asyncio.run(_statuses(backend, [task_id])) == ["queued"]

    every = hexq("worker", "--backend", backend, env=IMAGES_ENV)  # no --queues: every declared queue
    wait_until(lambda: asyncio.run(_statuses(backend, [task_id])) == ["succeeded"], 30, "the images task")
    assert every.terminate(15) == 0
    assert '"serving queues default,images"' in every.log() and "does not serve" not in every.log()

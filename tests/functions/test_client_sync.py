"""Client (blocking, on its own loop thread), `@task` with `.submit` through the default client, from_url's
choice of flavour, and an `import hexq` that loads no driver."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import client_tasks
import pytest

import hexq
from hexq import (
    AsyncClient,
    Client,
    ConfigurationError,
    TaskFailed,
    TaskRequest,
    TaskStatus,
    UnknownTaskType,
    WaitTimeout,
    task,
)
from hexq.core.registry import registry
from hexq.functions.bootstrap import bootstrap
from hexq.functions.client.direct import DirectTransport
from hexq.functions.settings import Settings
from hexq.functions.worker import run_worker

TASKS = ("client_tasks",)


@contextmanager
def worker_on(url: str) -> Iterator[None]:
    """A worker on `url` in a thread of its own (as another process would be), stopped on exit."""
    started = threading.Event()
    running: dict[str, Any] = {}

    async def work() -> None:
        container = bootstrap(Settings(backend_url=url, task_modules=TASKS, idle_wait=0.05))
        running.update(loop=asyncio.get_running_loop(), stop=asyncio.Event())
        started.set()
        try:
            await run_worker(container, running["stop"], worker_id="sync-test", signals=False)
        finally:
            await container.backend.close()

    thread = threading.Thread(target=asyncio.run, args=(work(),))
    thread.start()
    started.wait(10)
    try:
        yield
    finally:
        running["loop"].call_soon_threadsafe(running["stop"].set)
        thread.join(30)


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'hexq.db'}"


@pytest.fixture
def default_client_reset() -> Iterator[None]:
    """Each test configures the default client itself; the one it made is closed afterwards."""
    hexq.configure()
    yield
    hexq.configure()


def test_the_client_submits_waits_and_manages_tasks(url: str) -> None:
    with worker_on(url), Client.from_url(url, tasks=TASKS) as client:
        handle = client.submit(client_tasks.double, {"n": 21})
        many = client.submit_many([TaskRequest("client.double", {"n": n}) for n in (1, 2)])
        dead = client.submit("client.boom", {"message": "no"})
        waiting = client.submit("client.echo", queue=client_tasks.NOBODY)

        assert handle.result(timeout=30) == {"doubled": 42}
        assert [h.result(timeout=30) for h in many] == [{"doubled": 2}, {"doubled": 4}]
        with pytest.raises(TaskFailed, match="no"):
            dead.result(timeout=30)
        with pytest.raises(WaitTimeout):
            waiting.result(timeout=0.1)
        assert waiting.status() is TaskStatus.QUEUED and waiting.cancel().status is TaskStatus.CANCELLED
        assert client.stats().by_status[TaskStatus.SUCCEEDED] == 3
        assert [t.id for t in client.dead().items] == [dead.id] == [t.id for t in client.replay([dead.id])]
        assert {t.id for t in client.list_tasks(status="cancelled").items} == {waiting.id}
        client.put_schedule("tick", "@every 1h", client_tasks.echo)
        assert [s.name for s in client.schedules()] == ["tick"] and client.get_schedule("tick").type == "client.echo"
        client.delete_schedule("tick")


def test_the_client_pauses_and_resumes_a_queue(url: str) -> None:
    with worker_on(url), Client.from_url(url, tasks=TASKS) as client:
        assert client.pause("default") is True
        handle = client.submit("client.echo", {"x": 1})
        with pytest.raises(WaitTimeout):
            handle.result(timeout=0.3)
        assert [(q.name, q.paused, q.depth) for q in client.queues()] == [("default", True, 1)]
        assert client.resume("default") is True
        assert handle.result(timeout=30) == {"x": 1}


def test_one_client_serves_many_threads(url: str) -> None:
    results: list[Any] = []
    with worker_on(url), Client.from_url(url, tasks=TASKS) as client:
        threads = [threading.Thread(target=lambda n=n: results.append(client.submit(client_tasks.double, {"n": n})
                                                                      .result(timeout=30)))
                   for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)

    assert sorted(r["doubled"] for r in results) == [2 * n for n in range(8)]


def test_close_is_idempotent_and_stops_the_thread(url: str) -> None:
    client = Client.from_url(url, tasks=TASKS)
    client.close()
    client.close()

    assert not any(thread.name == "hexq-client" for thread in threading.enumerate())


def test_a_client_that_cannot_be_made_leaves_no_thread() -> None:
    with pytest.raises(ConfigurationError):
        Client.from_url("ftp://example.com")

    assert not any(thread.name == "hexq-client" for thread in threading.enumerate())


# -- @task --------------------------------------------------------------------------------------------
def test_task_returns_the_plain_function_registered_with_its_options() -> None:
    def triple(payload: dict[str, Any]) -> int:
        return 3 * int(payload["n"])

    decorated = task("client.triple", max_attempts=7, queue="maths")(triple)

    assert decorated is triple and triple({"n": 2}) == 6
    assert decorated.task_name == "client.triple"
    spec = registry.get("client.triple")
    assert (spec.fn, spec.max_attempts, spec.queue, spec.timeout) == (triple, 7, "maths", 300.0)


def test_an_async_task_stays_a_coroutine_function() -> None:
    assert asyncio.iscoroutinefunction(client_tasks.echo)
    assert registry.get("client.echo").is_async
    assert asyncio.run(client_tasks.echo({"a": 1})) == {"a": 1}


@pytest.mark.usefixtures("default_client_reset")
def test_submit_goes_through_the_configured_client(url: str) -> None:
    hexq.configure(url, tasks=TASKS)

    with worker_on(url):
        handle = client_tasks.double.submit({"n": 4}, priority="high")
        assert handle.result(timeout=30) == {"doubled": 8}
        assert handle.get().priority is hexq.Priority.HIGH


@pytest.mark.usefixtures("default_client_reset")
def test_submit_defaults_to_hexq_backend(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEXQ_BACKEND", url)
    monkeypatch.setenv("HEXQ_TASKS", "client_tasks")

    with worker_on(url):
        assert client_tasks.double.submit({"n": 5}).result(timeout=30) == {"doubled": 10}
    assert hexq.default_client() is hexq.default_client()


@pytest.mark.usefixtures("default_client_reset")
def test_configure_replaces_the_default_client(url: str, tmp_path: Path) -> None:
    hexq.configure(url)
    first = hexq.default_client()
    hexq.configure(f"sqlite:///{tmp_path / 'other.db'}")

    assert hexq.default_client() is not first
    with pytest.raises(RuntimeError, match="closed"):  # the replaced client was closed
        first.get("abc")


# -- from_url -----------------------------------------------------------------------------------------
async def test_from_url_picks_the_flavour_by_scheme() -> None:
    direct = AsyncClient.from_url("memory://", tasks=())

    assert isinstance(direct.transport, DirectTransport)
    with pytest.raises(ConfigurationError, match="unsupported scheme"):
        AsyncClient.from_url("ftp://example.com")
    with pytest.raises(ConfigurationError, match="API key"):
        AsyncClient.from_url("memory://", api_key="secret")
    with pytest.raises(ConfigurationError, match="no_such_module"):
        AsyncClient.from_url("memory://", tasks=["no_such_module"])
    await direct.close()


async def test_a_direct_client_says_how_to_submit_a_type_it_does_not_know() -> None:
    client = AsyncClient.from_url("memory://", tasks=())

    with pytest.raises(UnknownTaskType) as caught:
        await client.submit("billing.invoice")

    message = str(caught.value)
    assert "billing.invoice" in message and "client.echo" in message  # what it does know
    assert "HEXQ_TASKS" in message and "tasks=[" in message and "http(s)://" in message
    await client.close()


async def test_a_direct_client_imports_the_modules_in_hexq_tasks(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "client_env_tasks.py").write_text(
        "from hexq import task\n\n@task('client.from_env')\ndef handler(payload):\n    return payload\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("HEXQ_TASKS", "client_env_tasks")

    client = AsyncClient.from_url("memory://")
    handle = await client.submit("client.from_env")

    assert (await handle.get()).type == "client.from_env"
    await client.close()


def test_import_hexq_loads_no_driver() -> None:
    drivers = ("redis", "httpx", "boto3", "botocore", "starlette", "uvicorn")
    script = (f"import sys, hexq\nloaded = lambda: sorted(m for m in {drivers!r} if m in sys.modules)\n"
              "print(loaded())\nc = hexq.Client.from_url('memory://')\nprint(loaded())\nc.close()\n")

    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout

    assert out.splitlines() == ["[]", "[]"]

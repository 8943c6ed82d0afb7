"""One client suite, run against every flavour: memory, sqlite and Redis used directly, and a hexq API over
HTTP (the Starlette app through httpx's ASGI transport). Each flavour has a worker running beside it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path

import client_tasks
import httpx
import pytest
import redis_server

from hexq import (
    AsyncClient,
    InvalidTransition,
    Priority,
    ScheduleNotFound,
    Task,
    TaskCancelled,
    TaskFailed,
    TaskNotFound,
    TaskRequest,
    TaskStatus,
    UnknownTaskType,
    ValidationError,
    WaitTimeout,
)
from hexq.core.breaker import Circuit
from hexq.core.errors import ConfirmMismatch
from hexq.core.queues import QueueInfo
from hexq.functions.api import create_app
from hexq.functions.bootstrap import Container, bootstrap
from hexq.functions.client.direct import DirectTransport
from hexq.functions.client.http import HttpTransport
from hexq.functions.settings import Settings
from hexq.functions.worker import run_worker

TASKS = ("client_tasks",)
HAS_TRACEBACK = "traceback" in {f.name for f in fields(Task)}
FLAVOURS = ["memory", "sqlite", pytest.param("redis", marks=pytest.mark.redis), "http"]


@dataclass
class Flavour:
    name: str
    client: AsyncClient


def _container(url: str) -> Container:
    return bootstrap(Settings(backend_url=url, task_modules=TASKS, idle_wait=0.05))


def _url(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if name == "sqlite":
        return f"sqlite:///{tmp_path / 'hexq.db'}"
    if name == "redis":
        url: str = request.getfixturevalue("redis_url")
        redis_server.flush(client := redis_server.sync_client(url))
        client.close()
        return url
    return "memory://"  # memory, and the app behind the http flavour


def _client(name: str, url: str, worker: Container) -> AsyncClient:
    if name == "memory":  # one process: the client and the worker share the backend object
        return AsyncClient(DirectTransport(worker))
    if name == "http":
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(worker)), base_url="http://hexq")
        return AsyncClient(HttpTransport(http))
    return AsyncClient.from_url(url, tasks=TASKS)  # the public way in, for the backends other processes share


@pytest.fixture(params=FLAVOURS)
async def flavour(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Flavour]:
    name: str = request.param
    url = _url(name, request, tmp_path)
    worker = _container(url)
    stop = asyncio.Event()
    working = asyncio.create_task(run_worker(worker, stop, worker_id="test-worker", signals=False))
    client = _client(name, url, worker)
    try:
        yield Flavour(name, client)
    finally:
        stop.set()
        await working
        if name != "memory":  # memory's client closes nothing of its own: the backend is the worker's
            await client.close()
        await worker.backend.close()


@pytest.fixture
def client(flavour: Flavour) -> AsyncClient:
    return flavour.client


async def _waiting(client: AsyncClient, n: int = 1) -> list[str]:
    """Ids of `n` tasks that wait in a queue no worker serves (cancel them, or they wait forever)."""
    handles = await client.submit_many([TaskRequest("client.echo", {"i": i}, queue=client_tasks.NOBODY)
                                        for i in range(n)])
    return [handle.id for handle in handles]


# -- submit and wait -------------------------------------------------------------------------------
async def test_a_submitted_task_s_handle_gives_its_status_and_result(client: AsyncClient) -> None:
    handle = await client.submit("client.echo", {"hello": "world"})

    assert await handle.status() in {TaskStatus.QUEUED, TaskStatus.RUNNING, TaskStatus.SUCCEEDED}
    assert await handle.result(timeout=30) == {"hello": "world"}
    finished = await handle.get()
    assert finished.status is TaskStatus.SUCCEEDED and finished.id == handle.id
    assert await client.result(handle.id, timeout=30) == {"hello": "world"}


async def test_a_task_is_submitted_by_its_function_with_options(client: AsyncClient) -> None:
    handle = await client.submit(client_tasks.double, {"n": 21}, priority="high", max_attempts=2, timeout=10)

    task = await handle.wait(timeout=30)
    assert task.result == {"doubled": 42}
    assert (task.type, task.priority, task.max_attempts, task.timeout) == ("client.double", Priority.HIGH, 2, 10)


async def test_submit_many_returns_handles_in_order(client: AsyncClient) -> None:
    handles = await client.submit_many([TaskRequest("client.double", {"n": n}) for n in range(5)])

    assert [await handle.result(timeout=30) for handle in handles] == [{"doubled": 2 * n} for n in range(5)]


async def test_submit_many_stores_nothing_when_one_request_is_bad(client: AsyncClient) -> None:
    with pytest.raises(ValidationError) as caught:
        await client.submit_many([TaskRequest("client.echo", queue=client_tasks.NOBODY),
                                  TaskRequest("client.echo", delay=-1)])

    assert caught.value.field == "tasks[1].delay"
    assert (await client.list_tasks()).items == []


async def test_an_idempotency_key_returns_the_first_task(client: AsyncClient) -> None:
    first = await client.submit("client.echo", {"n": 1}, idempotency_key="order-17", queue=client_tasks.NOBODY)
    again = await client.submit("client.echo", {"n": 1}, idempotency_key="order-17", queue=client_tasks.NOBODY)

    assert again.id == first.id


async def test_a_delayed_task_is_scheduled(client: AsyncClient) -> None:
    later = await client.submit("client.echo", delay=3600)
    at = await client.submit("client.echo", run_at=datetime.now(UTC) + timedelta(hours=1))

    assert await later.status() is TaskStatus.SCHEDULED
    assert await at.status() is TaskStatus.SCHEDULED


async def test_a_dead_task_raises_task_failed_with_its_error_and_traceback(client: AsyncClient) -> None:
    handle = await client.submit(client_tasks.boom, {"message": "disk on fire"})

    with pytest.raises(TaskFailed) as caught:
        await handle.result(timeout=30)

    failed = caught.value
    assert not isinstance(failed, TaskCancelled)
    assert failed.task_id == handle.id and failed.task.status is TaskStatus.DEAD
    assert failed.error is not None and "disk on fire" in failed.error
    assert "disk on fire" in str(failed)
    if HAS_TRACEBACK:  # Task.traceback (core/model.py): the worker's traceback, shown as the error's cause
        assert failed.traceback is not None and "_explode" in failed.traceback
        assert failed.__cause__ is not None and "_explode" in str(failed.__cause__)


async def test_a_cancelled_task_raises_task_cancelled(client: AsyncClient) -> None:
    [task_id] = await _waiting(client)
    handle = client.handle(task_id)

    cancelled = await handle.cancel()

    assert cancelled.status is TaskStatus.CANCELLED
    with pytest.raises(TaskCancelled) as caught:
        await handle.result(timeout=30)
    assert caught.value.task.status is TaskStatus.CANCELLED


async def test_a_wait_returns_as_soon_as_the_task_finishes(client: AsyncClient) -> None:
    [task_id] = await _waiting(client)
    waiting = asyncio.create_task(client.handle(task_id).result())  # no timeout: it waits as long as it takes

    await asyncio.sleep(0.05)
    await client.cancel(task_id)

    with pytest.raises(TaskCancelled):
        await asyncio.wait_for(waiting, 30)


async def test_a_wait_that_runs_out_raises_wait_timeout_with_the_task(client: AsyncClient) -> None:
    [task_id] = await _waiting(client)

    for timeout in (0, 0.2):
        with pytest.raises(WaitTimeout) as caught:
            await client.handle(task_id).result(timeout=timeout)
        assert isinstance(caught.value, TimeoutError)
        assert caught.value.task.status is TaskStatus.QUEUED and caught.value.task_id == task_id
    with pytest.raises(ValueError):
        await client.wait(task_id, timeout=-1)


async def test_an_unknown_task_is_task_not_found(client: AsyncClient) -> None:
    with pytest.raises(TaskNotFound):
        await client.get("nope")
    with pytest.raises(TaskNotFound):
        await client.handle("nope").result(timeout=5)
    with pytest.raises(TaskNotFound):
        await client.cancel("nope")


async def test_bad_submits_raise_the_domain_errors(client: AsyncClient) -> None:
    with pytest.raises(UnknownTaskType):
        await client.submit("client.nope")
    with pytest.raises(ValidationError) as caught:
        await client.submit(client_tasks.checked, {"n": -1})
    assert caught.value.field == "payload"
    with pytest.raises(ValidationError) as caught:
        await client.submit("client.echo", delay=1, run_at=1)
    assert caught.value.field == "delay"
    with pytest.raises(ValidationError) as caught:
        await client.submit("client.echo", priority="urgent")
    assert caught.value.field == "priority"


async def test_a_finished_task_cannot_be_cancelled(client: AsyncClient) -> None:
    handle = await client.submit("client.echo")
    await handle.result(timeout=30)

    with pytest.raises(InvalidTransition):
        await handle.cancel()


# -- list and stats --------------------------------------------------------------------------------
async def test_list_tasks_filters_and_pages(client: AsyncClient) -> None:
    ids = await _waiting(client, 3)
    later = await client.submit("client.double", {"n": 1}, delay=3600)

    page = await client.list_tasks(queue=client_tasks.NOBODY, limit=2)
    rest = await client.list_tasks(queue=client_tasks.NOBODY, limit=2, cursor=page.next_cursor)

    assert len(page.items) == 2 and page.next_cursor is not None
    assert {t.id for t in page.items + rest.items} == set(ids)
    assert [t.id for t in (await client.list_tasks(status="scheduled")).items] == [later.id]
    assert [t.id for t in (await client.list_tasks(type="client.double")).items] == [later.id]
    with pytest.raises(ValidationError) as caught:
        await client.list_tasks(status="lost")
    assert caught.value.field == "status"
    with pytest.raises(ValidationError) as caught:
        await client.list_tasks(limit=0)
    assert caught.value.field == "limit"


async def test_stats_count_tasks_by_status_and_queued_by_queue(client: AsyncClient) -> None:
    await _waiting(client, 2)
    await client.submit("client.echo", delay=3600)

    stats = await client.stats()

    assert stats.by_status[TaskStatus.QUEUED] == 2 and stats.by_status[TaskStatus.SCHEDULED] == 1
    assert stats.queued[client_tasks.NOBODY][Priority.NORMAL] == 2 and stats.backlog == 2


# -- queues ----------------------------------------------------------------------------------------
async def test_a_paused_queue_holds_its_tasks_until_it_is_resumed(client: AsyncClient) -> None:
    assert await client.pause("default") is True
    assert await client.pause("default") is False
    handle = await client.submit("client.echo", {"x": 1})  # accepted while paused

    with pytest.raises(WaitTimeout):
        await handle.wait(timeout=0.5)  # the worker beside it does not take it
    assert [q for q in await client.queues() if q.name == "default"] == [QueueInfo("default", True, 1)]
    assert (await client.stats()).paused == frozenset({"default"})
    assert await client.resume("default") is True
    assert await handle.result(timeout=30) == {"x": 1}
    assert await client.resume("default") is False
    with pytest.raises(ValidationError) as caught:
        await client.pause("no spaces")
    assert caught.value.field == "queue"


# -- circuit breakers ------------------------------------------------------------------------------
async def test_a_breaker_is_opened_listed_and_closed(client: AsyncClient) -> None:
    opened = await client.open_breaker("client.payments")
    assert (opened.name, opened.state, opened.forced) == ("client.payments", Circuit.OPEN, True)
    assert [(b.name, b.state) for b in await client.breakers()] == [("client.payments", Circuit.OPEN)]
    closed = await client.close_breaker("client.payments")
    assert (closed.state, closed.forced, closed.opened_at) == (Circuit.CLOSED, False, None)
    with pytest.raises(ValidationError) as caught:
        await client.open_breaker("no spaces")
    assert caught.value.field == "breaker"


# -- dead letters ----------------------------------------------------------------------------------
async def test_search_and_cancel_matching(client: AsyncClient) -> None:
    ids = await _waiting(client, 3)  # payloads {"i": 0}, {"i": 1}, {"i": 2}

    page = await client.list_tasks(queue=client_tasks.NOBODY, search='"i":1')
    assert [t.id for t in page.items] == [ids[1]] and page.complete and page.scanned >= 3

    dry = await client.cancel_matching(queue=client_tasks.NOBODY, status="queued")
    assert (dry.matched, dry.done) == (3, 0)
    with pytest.raises(ConfirmMismatch):
        await client.cancel_matching(queue=client_tasks.NOBODY, status="queued", confirm=2)
    done = await client.cancel_matching(queue=client_tasks.NOBODY, status="queued", confirm=3)
    assert (done.matched, done.done) == (3, 3)
    assert {t.status for t in (await client.list_tasks(queue=client_tasks.NOBODY)).items} == {TaskStatus.CANCELLED}


async def test_dead_tasks_are_listed_and_replayed(client: AsyncClient) -> None:
    handle = await client.submit(client_tasks.boom)
    await handle.wait(timeout=30)

    dead = await client.dead()
    replayed = await client.replay([handle.id, "nope"])

    assert [t.id for t in dead.items] == [handle.id] and dead.items[0].status is TaskStatus.DEAD
    assert [t.id for t in replayed] == [handle.id]
    assert replayed[0].status is TaskStatus.QUEUED and replayed[0].attempts == 0
    with pytest.raises(TaskFailed):  # it runs again, and fails again
        await handle.result(timeout=30)


# -- schedules -------------------------------------------------------------------------------------
async def test_schedules_are_put_read_listed_and_deleted(client: AsyncClient) -> None:
    put = await client.put_schedule("tick", "@every 1h", client_tasks.echo, {"tick": True}, priority="high")

    assert (put.name, put.spec, put.type, dict(put.payload), put.priority) == (
        "tick", "@every 1h", "client.echo", {"tick": True}, Priority.HIGH)
    assert await client.get_schedule("tick") == put
    assert [s.name for s in await client.schedules()] == ["tick"]
    await client.delete_schedule("tick")
    with pytest.raises(ScheduleNotFound):
        await client.get_schedule("tick")
    with pytest.raises(ScheduleNotFound):
        await client.delete_schedule("tick")
    with pytest.raises(UnknownTaskType):
        await client.put_schedule("tock", "@every 1h", "client.nope")


async def test_list_and_cancel_by_priority_and_created_time(client: AsyncClient) -> None:
    low, high = (await client.submit_many([TaskRequest("client.echo", queue=client_tasks.NOBODY, priority=level)
                                           for level in ("low", "high")]))
    created = (await client.get(high.id)).created_at
    before = datetime.fromtimestamp(created, UTC) - timedelta(seconds=1)  # the client turns datetimes into seconds

    assert [t.id for t in (await client.list_tasks(priority="high")).items] == [high.id]
    assert [t.id for t in (await client.list_tasks(priority=Priority.LOW)).items] == [low.id]
    assert (await client.list_tasks(created_after=created, created_before=created)).items == []
    assert (await client.list_tasks(created_before=before)).items == []
    naive = await client.list_tasks(created_after=before.replace(tzinfo=None), priority=2)  # naive means UTC
    assert [t.id for t in naive.items] == [high.id]
    with pytest.raises(ValidationError) as caught:
        await client.list_tasks(priority=True)
    assert caught.value.field == "priority"

    assert (await client.cancel_matching(status="queued", priority="high", created_after=before)).matched == 1
    assert (await client.cancel_matching(status="queued", priority="high", created_before=before)).matched == 0
    assert (await client.cancel_matching(status="queued", priority="high", confirm=1)).done == 1
    assert (await client.get(high.id)).status is TaskStatus.CANCELLED
    assert (await client.get(low.id)).status is TaskStatus.QUEUED
    await client.cancel(low.id)

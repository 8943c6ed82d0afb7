"""Reads render whatever is stored. A record left by an older version or a hand edit (NaN, infinity, a
number past any range, a value of the wrong type) answers 200 with that value as null, never a 500."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

import openapi_schema_validator
import pytest
from starlette.testclient import TestClient

from hexq.adapters.memory import MemoryBackend
from hexq.core.clock import FakeClock
from hexq.core.model import Page, Priority, Task, TaskQuery, TaskStatus
from hexq.core.schedule import Schedule
from hexq.functions.bootstrap import Container
from hexq.functions.openapi import document
from hexq.functions.wire import MAX_RENDER_DEPTH


def documented(schema_name: str, body: Any) -> None:
    doc = document()
    schema = {**doc["components"]["schemas"][schema_name], "components": doc["components"]}
    openapi_schema_validator.validate(body, schema, cls=openapi_schema_validator.OAS31Validator)


def nested(levels: int) -> Any:
    value: Any = "bottom"
    for _ in range(levels):
        value = [value]
    return value


def depth(value: Any) -> int:
    levels = 0
    while isinstance(value, list):
        value, levels = value[0], levels + 1
    return levels


# -- schedules ----------------------------------------------------------------------------------
ODD_SCHEDULES = [
    # What the version before issue #9 stored for `@every 99999999999999999999d` and `@every 9…9d`.
    Schedule("inf", "@every " + "9" * 400 + "d", "echo", next_run=math.inf, last_run=-math.inf),
    Schedule("nan", "@every 1m", "echo", {"x": math.nan, "y": [math.inf]}, next_run=math.nan, last_run=math.nan),
    Schedule("huge", "@every 99999999999999999d", "echo", {"n": 10**5000}, next_run=8.64e21, last_run=10**400),
    Schedule("types", b"@every 1m", "echo", {"b": b"x", 5: {1, 2}}, next_run="soon",  # type: ignore[arg-type]
             priority=7, enabled="yes", tenant=None),  # type: ignore[arg-type]
    Schedule("payload", "@every 1m", "echo", ["not", "an", "object"], priority="urgent"),  # type: ignore[arg-type]
]
SHOWN_SCHEDULES = {
    "inf": {"next_run": None, "last_run": None},
    "nan": {"payload": {"x": None, "y": [None]}, "next_run": None, "last_run": None},
    "huge": {"payload": {"n": None}, "next_run": 8.64e21, "last_run": 10**400},
    "types": {"spec": None, "payload": {"b": None, "5": None}, "next_run": None, "priority": None, "enabled": None,
              "tenant": None},
    "payload": {"payload": None, "priority": None},
}


def test_a_stored_schedule_with_any_value_still_renders(client: TestClient, container: Container) -> None:
    for schedule in ODD_SCHEDULES:
        asyncio.run(container.backend.put_schedule(schedule))

    listing = client.get("/v1/schedules")

    assert listing.status_code == 200
    shown = {item["name"]: item for item in listing.json()["schedules"]}
    for name, fields in SHOWN_SCHEDULES.items():
        assert {key: shown[name][key] for key in fields} == fields, name
        one = client.get(f"/v1/schedules/{name}")
        assert (one.status_code, one.json()) == (200, shown[name])
    for name in ("inf", "nan", "huge"):  # the numbers' faults stay within the documented shape
        documented("Schedule", shown[name])


def test_a_stored_schedule_renders_as_before_when_nothing_is_odd(client: TestClient, container: Container) -> None:
    asyncio.run(container.backend.put_schedule(Schedule("ok", "@every 1m", "echo", {"n": 1}, "q", Priority.HIGH,
                                                        1e9, None, False, "acme")))

    assert client.get("/v1/schedules/ok").json() == {
        "name": "ok", "spec": "@every 1m", "type": "echo", "payload": {"n": 1}, "queue": "q", "priority": "high",
        "next_run": 1e9, "last_run": None, "enabled": False, "tenant": "acme"}


# -- tasks --------------------------------------------------------------------------------------
class StoredTasks(MemoryBackend):
    """A memory backend whose reads return `tasks` exactly as given, whatever is in them."""

    def __init__(self, clock: FakeClock, tasks: list[Task]) -> None:
        super().__init__(clock)
        self._stored = {task.id: task for task in tasks}

    async def get(self, task_id: str) -> Task | None:
        return self._stored.get(task_id)

    async def query(self, query: TaskQuery) -> Page:
        return Page(list(self._stored.values()), None)


ODD_TASKS = [
    Task("numbers", "echo", {"x": math.nan, "big": 10**5000}, status=TaskStatus.DEAD, timeout=math.inf,
         run_at=-math.inf, delay=math.nan, created_at=math.nan, started_at=1e300, finished_at=10**400,
         result={"r": math.inf}),
    Task("deep", "echo", {}, status=TaskStatus.SUCCEEDED, result=nested(5_000)),
    Task("text", "echo", {"s": "\udfff"}, error="\ud800 alone", result="\ud83d"),
    Task("types", "echo", ["not", "an", "object"], priority=9, status="queued",  # type: ignore[arg-type]
         attempts="1", max_attempts=2.5, worker_id=5, error=b"boom", idempotency_key=("k",),  # type: ignore[arg-type]
         tenant=None, result={1, 2}, run_at="soon"),  # type: ignore[arg-type]
]
SHOWN_TASKS: dict[str, Callable[[dict[str, Any]], bool]] = {
    "numbers": lambda task: (task["payload"], task["timeout"], task["run_at"], task["delay"], task["created_at"],
                             task["started_at"], task["finished_at"], task["result"], task["status"]) == (
        {"x": None, "big": None}, None, None, None, None, 1e300, 10**400, {"r": None}, "dead"),
    "deep": lambda task: depth(task["result"]) < MAX_RENDER_DEPTH and "bottom" not in str(task["result"]),
    "text": lambda task: (task["payload"], task["error"], task["result"]) == ({"s": "\udfff"}, "\ud800 alone",
                                                                              "\ud83d"),
    "types": lambda task: {key: task[key] for key in ("payload", "priority", "status", "attempts", "max_attempts",
                                                     "worker_id", "error", "idempotency_key", "tenant", "result",
                                                     "run_at")} == {
        "payload": None, "priority": None, "status": "queued", "attempts": None, "max_attempts": None,
        "worker_id": None, "error": None, "idempotency_key": None, "tenant": None, "result": None, "run_at": None},
}


@pytest.fixture
def stored_client(make_client: Callable[..., TestClient], make_container: Callable[..., Container],
                  clock: FakeClock) -> TestClient:
    return make_client(make_container(backend=StoredTasks(clock, ODD_TASKS)))


@pytest.mark.parametrize("task_id", list(SHOWN_TASKS))
def test_a_stored_task_with_any_value_still_renders(stored_client: TestClient, task_id: str) -> None:
    response = stored_client.get(f"/v1/tasks/{task_id}")

    assert response.status_code == 200
    assert SHOWN_TASKS[task_id](response.json()), response.json()
    if task_id != "types":  # the numbers' faults, and text, stay within the documented shape
        documented("Task", response.json())


@pytest.mark.parametrize("path", ["/v1/tasks", "/v1/dead"])
def test_a_listing_of_odd_tasks_still_renders(stored_client: TestClient, path: str) -> None:
    response = stored_client.get(path)

    assert response.status_code == 200
    shown = {task["id"]: task for task in response.json()["tasks"]}
    assert set(shown) == set(SHOWN_TASKS)
    for task_id, task in shown.items():
        assert SHOWN_TASKS[task_id](task), task

"""A client flavour that talks to a hexq API (`hexq serve`, the Lambda API) over HTTP, with an API key.

Waiting is a long poll: GET /v1/tasks/{id}?wait=S answers as soon as the task finishes, so a client
waits in a few requests, never in a loop of quick ones. Answers become the same Task, Page, Stats and
Schedule values, and error bodies the same hexq.core.errors, that a direct client gives.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from typing import Any
from urllib.parse import quote

import httpx

from hexq.core.breakers import BreakerInfo
from hexq.core.bulk import BulkResult, Filter
from hexq.core.codec import history_from_list
from hexq.core.errors import (
    BackendUnavailable,
    ConfirmMismatch,
    IdempotencyMismatch,
    InvalidTransition,
    Overloaded,
    QueueError,
    QueueFull,
    ScheduleNameTaken,
    ScheduleNotFound,
    TaskNotFound,
    UnknownTaskType,
    ValidationError,
)
from hexq.core.model import Page, Priority, Stats, Task, TaskStatus
from hexq.core.queues import QueueInfo
from hexq.core.registry import check_name
from hexq.core.schedule import Schedule
from hexq.functions.breaker_wire import breaker_from_dict
from hexq.functions.client.errors import ApiError
from hexq.functions.client.transport import ScheduleRequest, TaskRequest

# One long poll asks for at most this long: under the API's bound (Limits.max_wait, 60 s) and under the
# idle timeouts of what may sit in between (API Gateway cuts a request at 29-30 s, nginx at 60 s).
LONG_POLL = 20.0
TIMEOUT = 30.0  # seconds for any one request, on top of a long poll's wait
_TASK_FIELDS = frozenset(f.name for f in fields(Task))
_SCHEDULE_FIELDS = frozenset(f.name for f in fields(Schedule))


class HttpTransport:
    """Parameters: http, an httpx.AsyncClient whose base_url is the API (tests give it an ASGI transport);
    timeout, seconds for a request beyond its long poll; long_poll, the most one wait request asks for."""

    def __init__(self, http: httpx.AsyncClient, *, timeout: float = TIMEOUT, long_poll: float = LONG_POLL) -> None:
        self._http = http
        self._timeout = timeout
        self.max_wait = long_poll

    @classmethod
    def from_url(cls, url: str, *, api_key: str | None = None, timeout: float = TIMEOUT) -> HttpTransport:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        return cls(httpx.AsyncClient(base_url=url.rstrip("/"), headers=headers, timeout=timeout), timeout=timeout)

    async def submit(self, requests: Sequence[TaskRequest]) -> list[Task]:
        bodies = [_submit_body(request) for request in requests]
        if len(bodies) == 1:
            return [_task(await self._call("POST", "/v1/tasks", json=bodies[0]))]
        answer = await self._call("POST", "/v1/tasks:bulk", json={"tasks": bodies})
        return [_task(item) for item in answer["tasks"]]

    async def get(self, task_id: str) -> Task:
        return _task(await self._call("GET", _task_path(task_id)))

    async def wait(self, task_id: str, seconds: float) -> Task:
        seconds = min(seconds, self.max_wait)
        if not seconds >= 0.001:  # the API takes 0 < wait; less than a millisecond is no wait at all
            return await self.get(task_id)
        answer = await self._call("GET", _task_path(task_id), params={"wait": f"{seconds:.3f}"},
                                  timeout=self._timeout + seconds)
        return _task(answer)

    async def cancel(self, task_id: str) -> Task:
        return _task(await self._call("POST", _task_path(task_id) + ":cancel"))

    async def query(self, where: Filter, limit: int, cursor: str | None) -> Page:
        params = _filter_fields(where) | {"limit": str(limit), "cursor": cursor}
        params.pop("status", None)
        if where.status is TaskStatus.DEAD:  # the dead letters have their own endpoint (and a key with read sees it)
            path = "/v1/dead"
        else:
            path, params["status"] = "/v1/tasks", None if where.status is None else where.status.value
        answer = await self._call("GET", path, params={k: v for k, v in params.items() if v is not None})
        return Page([_task(item) for item in answer["tasks"]], answer.get("next_cursor"), answer.get("scanned", 0))

    async def cancel_matching(self, where: Filter, limit: int, confirm: int | None) -> BulkResult:
        return await self._bulk("/v1/tasks:cancel", where, limit, confirm)

    async def replay_matching(self, where: Filter, limit: int, confirm: int | None) -> BulkResult:
        return await self._bulk("/v1/dead:replay", where, limit, confirm)

    async def _bulk(self, path: str, where: Filter, limit: int, confirm: int | None) -> BulkResult:
        body: dict[str, Any] = {"filter": _filter_fields(where), "limit": limit}
        if confirm is not None:
            body["confirm"] = confirm
        a = await self._call("POST", path, json=body, params={"dry_run": "1"} if confirm is None else None)
        return BulkResult(a["matched"], a["scanned"], a["complete"], a.get("done", 0), a.get("pending", 0),
                          a.get("skipped", 0))

    async def stats(self) -> Stats:
        answer = await self._call("GET", "/v1/stats")
        return Stats(by_status={TaskStatus(status): n for status, n in answer["by_status"].items()},
                     queued={queue: {Priority.parse(level): n for level, n in levels.items()}
                             for queue, levels in answer["queued"].items()},
                     paused=frozenset(answer.get("paused", ())))  # a server older than pausing has none

    async def queues(self) -> list[QueueInfo]:
        return [QueueInfo(item["name"], item["paused"], item["depth"], item["running"], item["scheduled"], item["dead"])
                for item in (await self._call("GET", "/v1/queues"))["queues"]]

    async def pause(self, queue: str) -> bool:
        return bool((await self._call("POST", _queue_path(queue) + ":pause"))["changed"])

    async def resume(self, queue: str) -> bool:
        return bool((await self._call("POST", _queue_path(queue) + ":resume"))["changed"])

    async def breakers(self) -> list[BreakerInfo]:
        return [breaker_from_dict(item) for item in (await self._call("GET", "/v1/breakers"))["breakers"]]

    async def open_breaker(self, name: str) -> BreakerInfo:
        return breaker_from_dict(await self._call("POST", _breaker_path(name) + ":open"))

    async def close_breaker(self, name: str) -> BreakerInfo:
        return breaker_from_dict(await self._call("POST", _breaker_path(name) + ":close"))

    async def replay(self, task_ids: Sequence[str]) -> list[Task]:
        answer = await self._call("POST", "/v1/dead:replay", json={"ids": list(task_ids)})
        return [_task(item) for item in answer["replayed"]]

    async def schedules(self) -> list[Schedule]:
        return [_schedule(item) for item in (await self._call("GET", "/v1/schedules"))["schedules"]]

    async def get_schedule(self, name: str) -> Schedule:
        return _schedule(await self._call("GET", _schedule_path(name)))

    async def put_schedule(self, request: ScheduleRequest) -> Schedule:
        body = {"spec": request.spec, "type": request.type, "payload": dict(request.payload), "queue": request.queue,
                "priority": Priority.parse(request.priority).name.lower(), "enabled": request.enabled}
        return _schedule(await self._call("PUT", _schedule_path(request.name), json=body))

    async def delete_schedule(self, name: str) -> None:
        await self._call("DELETE", _schedule_path(name))

    async def close(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:  # refused, reset, timed out: the API cannot answer now
            raise BackendUnavailable(str(self._http.base_url), f"{type(exc).__name__}: {exc}") from exc
        if response.status_code >= 400:
            raise _error(response, path)
        return response.json() if response.content else None


def _task_path(task_id: str) -> str:
    return f"/v1/tasks/{quote(task_id, safe='')}"


def _breaker_path(name: str) -> str:
    return "/v1/breakers/" + quote(name, safe=":")


def _queue_path(queue: str) -> str:
    check_name(queue, "queue")  # a bad name is the same ValidationError as over a backend, before any request
    return "/v1/queues/" + quote(queue, safe=":")


def _schedule_path(name: str) -> str:
    return f"/v1/schedules/{quote(name, safe='')}"


def _submit_body(request: TaskRequest) -> dict[str, Any]:
    body = {"type": request.type, "payload": dict(request.payload), "priority": request.level.name.lower(),
            "queue": request.queue, "delay": request.delay, "run_at": request.at, "max_attempts": request.max_attempts,
            "timeout": request.timeout, "idempotency_key": request.idempotency_key}
    return {name: value for name, value in body.items() if value is not None}


def _task(data: Mapping[str, Any]) -> Task:
    """A task as the API shows it. Fields this version of Task does not have are left out."""
    values = {name: value for name, value in data.items() if name in _TASK_FIELDS}
    values["priority"] = Priority.parse(values["priority"])
    values["status"] = TaskStatus(values["status"])
    # The stored history: the view's attempts without the one it shows from the task's own fields.
    stored = [entry for entry in data.get("attempts_history") or () if entry.get("outcome") not in _SHOWN]
    values["history"] = history_from_list(stored)
    return Task(**values)


_SHOWN = frozenset(("running", "succeeded"))


def _schedule(data: Mapping[str, Any]) -> Schedule:
    values = {name: value for name, value in data.items() if name in _SCHEDULE_FIELDS}
    values["priority"] = Priority.parse(values["priority"])
    return Schedule(**values)


def _error(response: httpx.Response, path: str) -> QueueError:
    """The domain error a direct client would have raised for the same request; ApiError for the rest."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("error"), str):  # not hexq's (a proxy's page, say)
        if response.status_code in (502, 503, 504):
            return BackendUnavailable(str(response.url), f"HTTP {response.status_code}",
                                      retry_after=_retry(response) or 1.0)
        return ApiError(response.status_code, "http_error", response.text[:500], retry_after=_retry(response))
    code, message = body["error"], str(body.get("message", ""))
    details = body["details"] if isinstance(body.get("details"), dict) else {}
    make = _DOMAIN.get(code)
    error = make(response, path, message, details) if make is not None else None
    return error or ApiError(response.status_code, code, message, details, _retry(response))


def _retry(response: httpx.Response) -> float | None:
    try:
        seconds = float(response.headers["retry-after"])
    except (KeyError, ValueError):
        return None
    return seconds if math.isfinite(seconds) else None


def _not_found(response: httpx.Response, path: str, message: str, details: dict[str, Any]) -> QueueError | None:
    if path.startswith("/v1/schedules/"):
        return ScheduleNotFound(message)
    if path.startswith("/v1/tasks/"):
        return TaskNotFound(message)
    return None  # no such endpoint: a base URL that is not a hexq API's


def _queue_full(response: httpx.Response, path: str, message: str, details: dict[str, Any]) -> QueueError:
    error = QueueFull("", int(details.get("limit") or 0), retry_after=_retry(response) or 5.0)
    error.args = (message,)  # the server's text names the tenant, which this side does not know
    return error


def _overloaded(response: httpx.Response, path: str, message: str, details: dict[str, Any]) -> QueueError:
    """503 overloaded: the same Overloaded a direct client raises, with the server's figures."""
    error = Overloaded(str(details.get("queue", "")), str(details.get("reason", "backlog")),
                       backlog=int(_number(details, "backlog")), max_backlog=int(_number(details, "max_backlog")),
                       oldest_age=_number(details, "oldest_age"), max_oldest_age=_number(details, "max_oldest_age"),
                       retry_after=_retry(response) or 1.0)
    error.args = (message,)
    return error


def _number(details: dict[str, Any], name: str) -> float:
    value = details.get(name)
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else 0.0  # type: ignore[arg-type]


def _unavailable(response: httpx.Response, path: str, message: str, details: dict[str, Any]) -> QueueError:
    return BackendUnavailable(str(response.url), message, retry_after=_retry(response) or 1.0)


_Make = Callable[[httpx.Response, str, str, dict[str, Any]], QueueError | None]
_DOMAIN: Mapping[str, _Make] = {
    "validation_error": lambda r, p, m, d: ValidationError(m, field=d.get("field")),
    "unknown_task_type": lambda r, p, m, d: UnknownTaskType(m, field=d.get("field")),
    "idempotency_mismatch": lambda r, p, m, d: IdempotencyMismatch(m),
    "invalid_transition": lambda r, p, m, d: InvalidTransition(str(d.get("current")), str(d.get("target"))),
    "name_taken": lambda r, p, m, d: ScheduleNameTaken(m),
    "confirm_mismatch": lambda r, p, m, d: ConfirmMismatch(int(d.get("matched", 0)), int(d.get("confirm", 0))),
    "not_found": _not_found,
    "queue_full": _queue_full,
    "overloaded": _overloaded,
    "backend_unavailable": _unavailable,
}


def _filter_fields(where: Filter) -> dict[str, Any]:
    """The filter as GET parameters and the bulk body's `filter` both spell it (text only, none left empty)."""
    fields = {"status": None if where.status is None else where.status.value, "type": where.type,
              "queue": where.queue, "search": where.search,
              "priority": None if where.priority is None else where.priority.name.lower(),
              "created_after": None if where.created_after is None else repr(where.created_after),
              "created_before": None if where.created_before is None else repr(where.created_before)}
    return {name: value for name, value in fields.items() if value is not None}

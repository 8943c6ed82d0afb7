"""AsyncClient: hexq from an asyncio application, over a backend or a hexq API, with the same methods."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from hexq.core.breakers import BreakerInfo
from hexq.core.bulk import BulkResult, Filter
from hexq.core.errors import ConfigurationError, ValidationError
from hexq.core.model import JSON, Page, Priority, Stats, Task, TaskStatus
from hexq.core.queues import QueueInfo
from hexq.core.schedule import Schedule
from hexq.functions.client.errors import TaskCancelled, TaskFailed, WaitTimeout
from hexq.functions.client.transport import PriorityLike, ScheduleRequest, TaskRequest, Transport, epoch
from hexq.functions.settings import Settings

if TYPE_CHECKING:
    from hexq.functions.client.tasks import TaskFunction

EARLY_PAUSE = 0.01  # seconds before asking again after a wait that came back early, doubling ...
MAX_EARLY_PAUSE = 1.0  # ... up to this
HTTP_SCHEMES = frozenset({"http", "https"})


def task_name(task: str | TaskFunction[..., Any]) -> str:
    """A task type given by name, or by its @task function."""
    return task if isinstance(task, str) else task.task_name


def outcome(task: Task) -> JSON:
    """A finished task's result; TaskFailed (dead) or TaskCancelled when it has none."""
    if task.status is TaskStatus.DEAD:
        raise TaskFailed(task)
    if task.status is TaskStatus.CANCELLED:
        raise TaskCancelled(task)
    return task.result


def _status(value: TaskStatus | str | None) -> TaskStatus | None:
    try:
        return None if value is None else TaskStatus(value)
    except ValueError:
        allowed = ", ".join(status.value for status in TaskStatus)
        raise ValidationError(f"status must be one of {allowed}, not {value!r}", field="status") from None


def _where(status: TaskStatus | None, type: str | None, queue: str | None, search: str | None,
           priority: Priority | str | int | None, after: float | datetime | None,
           before: float | datetime | None) -> Filter:
    if isinstance(priority, bool):  # Priority.parse reads True as high, for submits; a filter names a level
        raise ValidationError("priority must be one of low, normal, high, critical or 0-3", field="priority")
    level = None if priority is None else Priority.parse(priority)
    return Filter(status, type, queue, search, level, epoch(after), epoch(before))


@dataclass(frozen=True, slots=True)
class AsyncTaskHandle:
    """A submitted task: its `id`, and ways to follow it. Keep the id to make a handle later (client.handle)."""

    id: str
    client: AsyncClient

    async def get(self) -> Task:
        return await self.client.get(self.id)

    async def status(self) -> TaskStatus:
        return (await self.client.get(self.id)).status

    # ASYNC109: the timeout is the wait's own, and running out is a WaitTimeout that carries the task as last seen.
    async def wait(self, timeout: float | None = None) -> Task:  # noqa: ASYNC109
        """The task once it has finished (succeeded, dead or cancelled). WaitTimeout after `timeout` seconds."""
        return await self.client.wait(self.id, timeout)

    async def result(self, timeout: float | None = None) -> JSON:  # noqa: ASYNC109
        """The handler's result. TaskFailed if the task died (its error and traceback attached), TaskCancelled,
        or WaitTimeout if it has not finished within `timeout` seconds (None: wait as long as it takes)."""
        return outcome(await self.client.wait(self.id, timeout))

    async def cancel(self) -> Task:
        return await self.client.cancel(self.id)


class AsyncClient:
    """hexq for asyncio code. Build it with `AsyncClient.from_url(url)`; close it (or use `async with`).

    Every method raises hexq errors: ValidationError / UnknownTaskType (a bad request), TaskNotFound,
    InvalidTransition (cancelling a task that already runs), BackendUnavailable (retry later), and over
    HTTP ApiError for what only HTTP has (401, 403, 429 rate limited).
    """

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    @classmethod
    def from_url(cls, url: str, *, api_key: str | None = None, tasks: Sequence[str] | None = None,
                 timeout: float = 30.0) -> AsyncClient:
        """A client for `url`:

        - a backend, used directly: `sqlite:///hexq.db`, `redis://host:6379/0`, `rediss://…`,
          `redis+cluster://…`, `aws://?region=…`, `memory://` (this process only). Task types are checked
          here, so they must be registered in this process: the modules in `tasks` are imported (default:
          HEXQ_TASKS, else the built-in examples), besides any @task this process has already run.
        - a hexq API: `http://host:8000`, `https://…`, with `api_key` (default: HEXQ_API_KEY) sent as a
          bearer token; `timeout` bounds each request (beyond a wait's long poll).
        """
        scheme = urlsplit(url).scheme
        if scheme in HTTP_SCHEMES:
            from hexq.functions.client.http import HttpTransport

            key = api_key if api_key is not None else Settings.from_env().api_key or None
            return cls(HttpTransport.from_url(url, api_key=key, timeout=timeout))
        if api_key is not None:
            raise ConfigurationError(f"an API key is for a hexq API (http:// or https://), not for {scheme}://; "
                                     "a backend URL carries its own credentials")
        from hexq.functions.client.direct import DirectTransport

        return cls(DirectTransport.from_url(url, tasks=tasks))

    # -- tasks --------------------------------------------------------------------------------------
    async def submit(self, task: str | TaskFunction[..., Any], payload: Mapping[str, JSON] | None = None, *,
                     priority: PriorityLike = Priority.NORMAL, queue: str | None = None, delay: float | None = None,
                     run_at: float | datetime | None = None, max_attempts: int | None = None,
                     timeout: float | None = None,  # noqa: ASYNC109 - each attempt's, which the worker enforces
                     idempotency_key: str | None = None) -> AsyncTaskHandle:
        """Submit one task of type `task` (a name, or a @task function). Options left out are the type's."""
        request = TaskRequest(task_name(task), payload or {}, priority, queue, delay, run_at, max_attempts, timeout,
                              idempotency_key)
        return (await self.submit_many([request]))[0]

    async def submit_many(self, requests: Iterable[TaskRequest]) -> list[AsyncTaskHandle]:
        """Submit up to 1000 tasks in one round trip: all of them, or (on any error) none."""
        return [self.handle(task.id) for task in await self.transport.submit(list(requests))]

    def handle(self, task_id: str) -> AsyncTaskHandle:
        return AsyncTaskHandle(task_id, self)

    async def get(self, task_id: str) -> Task:
        return await self.transport.get(task_id)

    async def wait(self, task_id: str, timeout: float | None = None) -> Task:  # noqa: ASYNC109
        """The task once it has finished, waiting at most `timeout` seconds (None: as long as it takes);
        WaitTimeout past that. Never a busy loop: it blocks on the backend (Redis), long-polls (HTTP), or
        polls with backoff (SQLite), in slices of at most the transport's max_wait."""
        if timeout is not None and not timeout >= 0:
            raise ValueError(f"timeout must be None or a number of seconds >= 0, not {timeout!r}")
        deadline = math.inf if timeout is None else time.monotonic() + timeout
        pause = EARLY_PAUSE
        while True:
            asked = time.monotonic()
            left = min(self.transport.max_wait, deadline - asked)
            task = await (self.transport.wait(task_id, left) if left > 0 else self.transport.get(task_id))
            if task.is_terminal:
                return task
            now = time.monotonic()
            if now >= deadline:
                raise WaitTimeout(task, timeout or 0.0)
            if now - asked < left / 2:
                # Answered early and unfinished (an older server ignores ?wait=): back off, never ask again at once.
                await asyncio.sleep(min(pause, deadline - now))
                pause = min(pause * 2, MAX_EARLY_PAUSE)
            else:
                pause = EARLY_PAUSE

    async def result(self, task_id: str, timeout: float | None = None) -> JSON:  # noqa: ASYNC109
        return await self.handle(task_id).result(timeout)

    async def cancel(self, task_id: str) -> Task:
        """Cancel the task; returns it as stored then (wait on it to see it end). InvalidTransition once it has
        finished, or where it cannot be stopped any more."""
        return await self.transport.cancel(task_id)

    async def list_tasks(self, *, status: TaskStatus | str | None = None, type: str | None = None,
                         queue: str | None = None, limit: int = 50, cursor: str | None = None,
                         search: str | None = None, priority: Priority | str | int | None = None,
                         created_after: float | datetime | None = None,
                         created_before: float | datetime | None = None) -> Page:
        """One page of tasks, newest first; pass the page's next_cursor as `cursor` for the next one.
        `search`: only tasks whose payload (compact JSON) or error holds this text; such a page examines at
        most 10,000 tasks and may come back short with a cursor (page.scanned, page.complete say how far it got).
        `priority`: that level only; `created_after` <= created_at < `created_before` (epoch seconds on the
        backend's clock, or datetimes: naive means UTC)."""
        where = _where(_status(status), type, queue, search, priority, created_after, created_before)
        return await self.transport.query(where, limit, cursor)

    async def cancel_matching(self, *, status: TaskStatus | str | None = None, type: str | None = None,
                              queue: str | None = None, search: str | None = None, limit: int = 1000,
                              confirm: int | None = None, priority: Priority | str | int | None = None,
                              created_after: float | datetime | None = None,
                              created_before: float | datetime | None = None) -> BulkResult:
        """Cancel the queued, scheduled and running tasks that match, up to `limit`. Without `confirm`, a dry run:
        only counts (result.matched). With it: acts on at most `confirm` tasks, and raises ConfirmMismatch
        (changing nothing) if more match now."""
        where = _where(_status(status), type, queue, search, priority, created_after, created_before)
        return await self.transport.cancel_matching(where, limit, confirm)

    async def replay_matching(self, *, type: str | None = None, queue: str | None = None,
                              search: str | None = None, limit: int = 1000, confirm: int | None = None,
                              priority: Priority | str | int | None = None,
                              created_after: float | datetime | None = None,
                              created_before: float | datetime | None = None) -> BulkResult:
        """Replay the dead tasks that match (500 at a time, a pause between); `confirm` as in cancel_matching."""
        where = _where(None, type, queue, search, priority, created_after, created_before)
        return await self.transport.replay_matching(where, limit, confirm)

    async def stats(self) -> Stats:
        return await self.transport.stats()

    # -- queues ---------------------------------------------------------------------------------------
    async def queues(self) -> list[QueueInfo]:
        """Every queue that holds a queued, running, scheduled or dead task, or is paused, by name."""
        return await self.transport.queues()

    async def pause(self, queue: str) -> bool:
        """Stop workers claiming `queue`'s tasks (submits are still accepted). True if it was not paused before."""
        return await self.transport.pause(queue)

    async def resume(self, queue: str) -> bool:
        """Make `queue`'s tasks claimable again at once. True if it was paused."""
        return await self.transport.resume(queue)

    # -- circuit breakers ---------------------------------------------------------------------------
    async def breakers(self) -> list[BreakerInfo]:
        """Every stored circuit breaker and every one the known task types declare, by name."""
        return await self.transport.breakers()

    async def open_breaker(self, name: str) -> BreakerInfo:
        """Force breaker `name` open: workers give its tasks back unrun until it is closed."""
        return await self.transport.open_breaker(name)

    async def close_breaker(self, name: str) -> BreakerInfo:
        """Close breaker `name` and forget what it counted."""
        return await self.transport.close_breaker(name)

    # -- dead letters -------------------------------------------------------------------------------
    async def dead(self, *, type: str | None = None, queue: str | None = None, limit: int = 50,
                   cursor: str | None = None, search: str | None = None, priority: Priority | str | int | None = None,
                   created_after: float | datetime | None = None,
                   created_before: float | datetime | None = None) -> Page:
        """One page of dead tasks, newest first; the filters as in list_tasks."""
        where = _where(TaskStatus.DEAD, type, queue, search, priority, created_after, created_before)
        return await self.transport.query(where, limit, cursor)

    async def replay(self, task_ids: Iterable[str]) -> list[Task]:
        """Queue dead tasks again with fresh attempts; returns those that moved (others are skipped)."""
        return await self.transport.replay(list(task_ids))

    # -- schedules ----------------------------------------------------------------------------------
    async def schedules(self) -> list[Schedule]:
        return await self.transport.schedules()

    async def get_schedule(self, name: str) -> Schedule:
        return await self.transport.get_schedule(name)

    async def put_schedule(self, name: str, spec: str, task: str | TaskFunction[..., Any],
                           payload: Mapping[str, JSON] | None = None, *, queue: str = "default",
                           priority: PriorityLike = Priority.NORMAL, enabled: bool = True) -> Schedule:
        """Create or replace schedule `name`: `spec` is five-field cron (UTC) or "@every 1m"."""
        request = ScheduleRequest(name, spec, task_name(task), payload or {}, queue, priority, enabled)
        return await self.transport.put_schedule(request)

    async def delete_schedule(self, name: str) -> None:
        await self.transport.delete_schedule(name)

    # -- lifecycle ----------------------------------------------------------------------------------
    async def close(self) -> None:
        await self.transport.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

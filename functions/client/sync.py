"""Client: the AsyncClient's methods for code that is not async.

The AsyncClient runs on an event loop in a private thread, made with the client and stopped by close():
the drivers' connections (redis.asyncio's, httpx's) belong to the loop they were made on, so every call
goes to that one loop, from whichever thread it is made.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from hexq.core.breakers import BreakerInfo
from hexq.core.bulk import BulkResult
from hexq.core.model import JSON, Page, Priority, Stats, Task, TaskStatus
from hexq.core.queues import QueueInfo
from hexq.core.schedule import Schedule
from hexq.functions.client.aio import AsyncClient, outcome
from hexq.functions.client.transport import PriorityLike, TaskRequest

if TYPE_CHECKING:
    from hexq.functions.client.tasks import TaskFunction

T = TypeVar("T")


class _LoopThread:
    """An event loop running in a daemon thread; `run` hands it a coroutine and waits for the outcome."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="hexq-client", daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if self._loop.is_closed():
            coroutine.close()
            raise RuntimeError("this hexq client is closed")
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # e.g. Ctrl-C while waiting: stop the call, not only the wait for it
            raise

    @property
    def closed(self) -> bool:
        return self._loop.is_closed()

    def stop(self) -> None:
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


@dataclass(frozen=True, slots=True)
class TaskHandle:
    """A submitted task: its `id`, and ways to follow it."""

    id: str
    client: Client

    def get(self) -> Task:
        return self.client.get(self.id)

    def status(self) -> TaskStatus:
        return self.client.get(self.id).status

    def wait(self, timeout: float | None = None) -> Task:
        """The task once it has finished (succeeded, dead or cancelled). WaitTimeout after `timeout` seconds."""
        return self.client.wait(self.id, timeout)

    def result(self, timeout: float | None = None) -> JSON:
        """The handler's result. TaskFailed if the task died (its error and traceback attached), TaskCancelled,
        or WaitTimeout if it has not finished within `timeout` seconds (None: wait as long as it takes)."""
        return outcome(self.client.wait(self.id, timeout))

    def cancel(self) -> Task:
        return self.client.cancel(self.id)


class Client:
    """hexq for code that is not async: the AsyncClient's methods, blocking. Build it with
    `Client.from_url(url)` (see AsyncClient.from_url); close it (or use `with`). Safe to share between threads."""

    def __init__(self, make: Callable[[], AsyncClient]) -> None:
        """`make` builds the AsyncClient; it is called on the client's own loop, where the client will live."""

        async def build() -> AsyncClient:
            return make()

        self._loop = _LoopThread()
        try:
            self.aio = self._loop.run(build())
        except BaseException:
            self._loop.stop()
            raise

    @classmethod
    def from_url(cls, url: str, *, api_key: str | None = None, tasks: Sequence[str] | None = None,
                 timeout: float = 30.0) -> Client:
        """A client for `url`: a backend used directly, or a hexq API (http, https); see AsyncClient.from_url."""
        return cls(lambda: AsyncClient.from_url(url, api_key=api_key, tasks=tasks, timeout=timeout))

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self._loop.run(coroutine)

    # -- tasks --------------------------------------------------------------------------------------
    def submit(self, task: str | TaskFunction[..., Any], payload: Mapping[str, JSON] | None = None, *,
               priority: PriorityLike = Priority.NORMAL, queue: str | None = None, delay: float | None = None,
               run_at: float | datetime | None = None, max_attempts: int | None = None, timeout: float | None = None,
               idempotency_key: str | None = None) -> TaskHandle:
        """Submit one task of type `task` (a name, or a @task function). Options left out are the type's."""
        handle = self._run(self.aio.submit(task, payload, priority=priority, queue=queue, delay=delay, run_at=run_at,
                                           max_attempts=max_attempts, timeout=timeout,
                                           idempotency_key=idempotency_key))
        return self.handle(handle.id)

    def submit_many(self, requests: Iterable[TaskRequest]) -> list[TaskHandle]:
        """Submit up to 1000 tasks in one round trip: all of them, or (on any error) none."""
        return [self.handle(h.id) for h in self._run(self.aio.submit_many(list(requests)))]

    def handle(self, task_id: str) -> TaskHandle:
        return TaskHandle(task_id, self)

    def get(self, task_id: str) -> Task:
        return self._run(self.aio.get(task_id))

    def wait(self, task_id: str, timeout: float | None = None) -> Task:
        return self._run(self.aio.wait(task_id, timeout))

    def result(self, task_id: str, timeout: float | None = None) -> JSON:
        return outcome(self.wait(task_id, timeout))

    def cancel(self, task_id: str) -> Task:
        return self._run(self.aio.cancel(task_id))

    def list_tasks(self, *, status: TaskStatus | str | None = None, type: str | None = None, queue: str | None = None,
                   limit: int = 50, cursor: str | None = None, search: str | None = None,
                   priority: Priority | str | int | None = None, created_after: float | datetime | None = None,
                   created_before: float | datetime | None = None) -> Page:
        """AsyncClient.list_tasks: `priority` that level only; created_after <= created_at < created_before."""
        return self._run(self.aio.list_tasks(status=status, type=type, queue=queue, limit=limit, cursor=cursor,
                                             search=search, priority=priority, created_after=created_after,
                                             created_before=created_before))

    def cancel_matching(self, *, status: TaskStatus | str | None = None, type: str | None = None,
                        queue: str | None = None, search: str | None = None, limit: int = 1000,
                        confirm: int | None = None, priority: Priority | str | int | None = None,
                        created_after: float | datetime | None = None,
                        created_before: float | datetime | None = None) -> BulkResult:
        """AsyncClient.cancel_matching: without `confirm` a dry run; with it, ConfirmMismatch if more match."""
        return self._run(self.aio.cancel_matching(status=status, type=type, queue=queue, search=search, limit=limit,
                                                  confirm=confirm, priority=priority, created_after=created_after,
                                                  created_before=created_before))

    def replay_matching(self, *, type: str | None = None, queue: str | None = None, search: str | None = None,
                        limit: int = 1000, confirm: int | None = None, priority: Priority | str | int | None = None,
                        created_after: float | datetime | None = None,
                        created_before: float | datetime | None = None) -> BulkResult:
        return self._run(self.aio.replay_matching(type=type, queue=queue, search=search, limit=limit,
                                                  confirm=confirm, priority=priority, created_after=created_after,
                                                  created_before=created_before))

    def stats(self) -> Stats:
        return self._run(self.aio.stats())

    # -- queues ---------------------------------------------------------------------------------------
    def queues(self) -> list[QueueInfo]:
        return self._run(self.aio.queues())

    def pause(self, queue: str) -> bool:
        """Stop workers claiming `queue`'s tasks (submits are still accepted). True if it was not paused before."""
        return self._run(self.aio.pause(queue))

    def resume(self, queue: str) -> bool:
        """Make `queue`'s tasks claimable again at once. True if it was paused."""
        return self._run(self.aio.resume(queue))

    # -- circuit breakers ---------------------------------------------------------------------------
    def breakers(self) -> list[BreakerInfo]:
        """Every stored circuit breaker and every one the known task types declare, by name."""
        return self._run(self.aio.breakers())

    def open_breaker(self, name: str) -> BreakerInfo:
        """Force breaker `name` open: workers give its tasks back unrun until it is closed."""
        return self._run(self.aio.open_breaker(name))

    def close_breaker(self, name: str) -> BreakerInfo:
        """Close breaker `name` and forget what it counted."""
        return self._run(self.aio.close_breaker(name))

    # -- dead letters -------------------------------------------------------------------------------
    def dead(self, *, type: str | None = None, queue: str | None = None, limit: int = 50,
             cursor: str | None = None, search: str | None = None, priority: Priority | str | int | None = None,
             created_after: float | datetime | None = None, created_before: float | datetime | None = None) -> Page:
        return self._run(self.aio.dead(type=type, queue=queue, limit=limit, cursor=cursor, search=search,
                                       priority=priority, created_after=created_after, created_before=created_before))

    def replay(self, task_ids: Iterable[str]) -> list[Task]:
        return self._run(self.aio.replay(list(task_ids)))

    # -- schedules ----------------------------------------------------------------------------------
    def schedules(self) -> list[Schedule]:
        return self._run(self.aio.schedules())

    def get_schedule(self, name: str) -> Schedule:
        return self._run(self.aio.get_schedule(name))

    def put_schedule(self, name: str, spec: str, task: str | TaskFunction[..., Any],
                     payload: Mapping[str, JSON] | None = None, *, queue: str = "default",
                     priority: PriorityLike = Priority.NORMAL, enabled: bool = True) -> Schedule:
        return self._run(self.aio.put_schedule(name, spec, task, payload, queue=queue, priority=priority,
                                               enabled=enabled))

    def delete_schedule(self, name: str) -> None:
        self._run(self.aio.delete_schedule(name))

    # -- lifecycle ----------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the connections and stop the client's thread. Idempotent."""
        if not self._loop.closed:
            try:
                self._run(self.aio.close())
            finally:
                self._loop.stop()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

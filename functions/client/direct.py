"""A client flavour that uses a backend directly (memory, sqlite, redis, aws): the services of a Container.

This is what `hexq submit` does, as a library: the process sees every tenant, and submits as the
"default" one. It validates a submit itself, so it must know the task type (its queue, attempts,
timeout and validate function come from the type's `@task`): it knows the types registered in this
process, after importing the modules in `tasks` (or HEXQ_TASKS, or the built-in examples).
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from hexq.core.breakers import BreakerInfo
from hexq.core.bulk import BulkResult, Filter
from hexq.core.errors import UnknownTaskType
from hexq.core.model import Page, Priority, Stats, Task, TaskQuery
from hexq.core.queues import QueueInfo
from hexq.core.schedule import Schedule
from hexq.core.services import SubmitRequest
from hexq.functions.bootstrap import Container, bootstrap
from hexq.functions.client.transport import ScheduleRequest, TaskRequest
from hexq.functions.settings import Settings

_SHOWN_TYPES = 20  # registered types an unknown-type error lists


class DirectTransport:
    """Parameters: container, from the composition root (hexq.functions.bootstrap.bootstrap)."""

    def __init__(self, container: Container) -> None:
        self.container = container
        self.max_wait = container.tasks.limits.max_wait

    @classmethod
    def from_url(cls, url: str, *, tasks: Sequence[str] | None = None) -> DirectTransport:
        """The same settings as every hexq command (HEXQ_* variables), with `url` as the backend and, when
        given, `tasks` as the task modules to import (instead of HEXQ_TASKS)."""
        settings = Settings.from_env().override(backend_url=url, task_modules=None if tasks is None else tuple(tasks))
        return cls(bootstrap(settings))

    async def submit(self, requests: Sequence[TaskRequest]) -> list[Task]:
        submits = [self._submit_request(request) for request in requests]
        try:
            if len(submits) == 1:
                return [(await self.container.tasks.submit(submits[0])).task]
            return [submitted.task for submitted in await self.container.tasks.submit_bulk(submits)]
        except UnknownTaskType as exc:
            raise UnknownTaskType(f"{exc}. {self._unknown_type_hint()}", field=exc.field) from None

    async def get(self, task_id: str) -> Task:
        return await self.container.tasks.get(task_id)

    async def wait(self, task_id: str, seconds: float) -> Task:
        return await self.container.tasks.wait(task_id, min(seconds, self.max_wait))

    async def cancel(self, task_id: str) -> Task:
        return await self.container.tasks.cancel(task_id)

    async def query(self, where: Filter, limit: int, cursor: str | None) -> Page:
        query = TaskQuery(status=where.status, type=where.type, queue=where.queue, limit=limit, cursor=cursor,
                          search=where.search, priority=where.priority, created_after=where.created_after,
                          created_before=where.created_before)
        return await self.container.tasks.query(query)

    async def cancel_matching(self, where: Filter, limit: int, confirm: int | None) -> BulkResult:
        return await self.container.bulk.cancel_matching(where, None, limit=limit, confirm=confirm)

    async def replay_matching(self, where: Filter, limit: int, confirm: int | None) -> BulkResult:
        return await self.container.bulk.replay_matching(where, None, limit=limit, confirm=confirm)

    async def stats(self) -> Stats:
        return await self.container.tasks.stats()

    async def replay(self, task_ids: Sequence[str]) -> list[Task]:
        return await self.container.tasks.replay(task_ids)

    async def queues(self) -> list[QueueInfo]:
        return await self.container.queues.queues()

    async def pause(self, queue: str) -> bool:
        return await self.container.queues.pause(queue)

    async def resume(self, queue: str) -> bool:
        return await self.container.queues.resume(queue)

    async def breakers(self) -> list[BreakerInfo]:
        return await self.container.breakers.breakers()

    async def open_breaker(self, name: str) -> BreakerInfo:
        return await self.container.breakers.open(name)

    async def close_breaker(self, name: str) -> BreakerInfo:
        return await self.container.breakers.close(name)

    async def schedules(self) -> list[Schedule]:
        return await self.container.schedules.all()

    async def get_schedule(self, name: str) -> Schedule:
        return await self.container.schedules.get(name)

    async def put_schedule(self, request: ScheduleRequest) -> Schedule:
        # tenant None: this process sees every tenant; a schedule keeps its tenant, a new one is "default"'s.
        return await self.container.schedules.put(
            request.name, request.spec, request.type, request.payload, queue=request.queue,
            priority=Priority.parse(request.priority), enabled=request.enabled, tenant=None)

    async def delete_schedule(self, name: str) -> None:
        await self.container.schedules.delete(name)

    async def close(self) -> None:
        await self.container.backend.close()

    @staticmethod
    def _submit_request(request: TaskRequest) -> SubmitRequest:
        return SubmitRequest(type=request.type, payload=request.payload, priority=request.level, queue=request.queue,
                             delay=request.delay, run_at=request.at, max_attempts=request.max_attempts,
                             timeout=request.timeout, idempotency_key=request.idempotency_key)

    def _unknown_type_hint(self) -> str:
        known = [spec.name for spec in self.container.registry]
        shown = ", ".join(known[:_SHOWN_TYPES]) + (", ..." if len(known) > _SHOWN_TYPES else "")
        scheme = urlsplit(self.container.settings.backend_url).scheme
        return (f"A {scheme}:// client submits only task types registered in this process ({shown or 'none'}): "
                "import the module that defines it, or name it in tasks=[...] of from_url() or in HEXQ_TASKS; "
                "or submit through a hexq API (an http(s):// URL), where the server checks the type")

"""What a client needs from where it sends: a backend used directly, or a hexq API over HTTP.

Both flavours (hexq.functions.client.direct, hexq.functions.client.http) implement `Transport`, and
AsyncClient builds every method on it, so the two answer alike: the same results, the same errors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from hexq.core.breakers import BreakerInfo
from hexq.core.bulk import BulkResult, Filter
from hexq.core.model import JSON, Page, Priority, Stats, Task
from hexq.core.queues import QueueInfo
from hexq.core.schedule import Schedule

PriorityLike = Priority | str | int | bool
"""Priority.HIGH, "high", 2, or True (high); see Priority.parse."""


def epoch(value: float | datetime | None) -> float | None:
    """Epoch seconds, from a number or a datetime (naive means UTC, as the API reads an ISO time)."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    return value


@dataclass(frozen=True, slots=True)
class TaskRequest:
    """One task to submit, for `submit_many` (one round trip). `type` is a registered task type; the other
    fields default to the type's own settings (`@task(..., queue=, max_attempts=, timeout=)`)."""

    type: str
    payload: Mapping[str, JSON] = field(default_factory=dict)
    priority: PriorityLike = Priority.NORMAL
    queue: str | None = None
    delay: float | None = None  # seconds from now; not with run_at
    run_at: float | datetime | None = None  # epoch seconds or a datetime (naive means UTC); not with delay
    max_attempts: int | None = None
    timeout: float | None = None  # seconds per attempt
    idempotency_key: str | None = None  # submitting the same key again returns the first task

    @property
    def level(self) -> Priority:
        return Priority.parse(self.priority)

    @property
    def at(self) -> float | None:
        """run_at as epoch seconds."""
        if isinstance(self.run_at, datetime):
            moment = self.run_at if self.run_at.tzinfo else self.run_at.replace(tzinfo=UTC)
            return moment.timestamp()
        return self.run_at


@dataclass(frozen=True, slots=True)
class ScheduleRequest:
    name: str
    spec: str  # five-field cron (UTC) or "@every 1m"
    type: str
    payload: Mapping[str, JSON] = field(default_factory=dict)
    queue: str = "default"
    priority: PriorityLike = Priority.NORMAL
    enabled: bool = True


class Transport(Protocol):
    """The operations a client is built on. Each raises the hexq.core.errors a service raises for the same
    request (TaskNotFound, ValidationError, ...), and BackendUnavailable when it cannot be answered now."""

    max_wait: float  # the longest one `wait` call may block

    async def submit(self, requests: Sequence[TaskRequest]) -> list[Task]:
        """Store the tasks in one round trip, all or none; one task per request, in order."""
        ...

    async def get(self, task_id: str) -> Task: ...

    async def wait(self, task_id: str, seconds: float) -> Task:
        """The task once finished, or as it is after `seconds` (0 < seconds <= max_wait), whichever is first."""
        ...

    async def cancel(self, task_id: str) -> Task: ...

    async def query(self, where: Filter, limit: int, cursor: str | None) -> Page:
        """One page of the tasks that match `where` (its status DEAD: the dead letters), newest first."""

    async def cancel_matching(self, where: Filter, limit: int, confirm: int | None) -> BulkResult:
        """core.bulk's cancel by filter; confirm=None is a dry run."""
        ...

    async def replay_matching(self, where: Filter, limit: int, confirm: int | None) -> BulkResult:
        """core.bulk's replay by filter; confirm=None is a dry run."""
        ...

    async def stats(self) -> Stats: ...

    async def replay(self, task_ids: Sequence[str]) -> list[Task]: ...

    async def queues(self) -> list[QueueInfo]: ...

    async def pause(self, queue: str) -> bool:
        """True if the queue was not paused before."""
        ...

    async def resume(self, queue: str) -> bool:
        """True if the queue was paused."""
        ...

    async def breakers(self) -> list[BreakerInfo]: ...

    async def open_breaker(self, name: str) -> BreakerInfo: ...

    async def close_breaker(self, name: str) -> BreakerInfo: ...

    async def schedules(self) -> list[Schedule]: ...

    async def get_schedule(self, name: str) -> Schedule: ...

    async def put_schedule(self, request: ScheduleRequest) -> Schedule: ...

    async def delete_schedule(self, name: str) -> None: ...

    async def close(self) -> None: ...

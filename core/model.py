"""The domain model: tasks, their statuses and the one transition table."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from enum import IntEnum, StrEnum
from typing import Any, Final, cast

from hexq.core.errors import InvalidTransition, ValidationError

JSON = Any  # a value that json.dumps accepts; kept as Any because JSON is recursive


class TaskStatus(StrEnum):
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DEAD = "dead"
    CANCELLED = "cancelled"


_S = TaskStatus
# FAILED is the moment between a failed attempt and the decision: the worker moves a task
# RUNNING -> FAILED -> SCHEDULED (retry) or DEAD in one settle, so FAILED is never stored.
_NEXT: Final[Mapping[TaskStatus, frozenset[TaskStatus]]] = {
    _S.SCHEDULED: frozenset({_S.QUEUED, _S.CANCELLED}),
    _S.QUEUED: frozenset({_S.RUNNING, _S.CANCELLED}),
    _S.RUNNING: frozenset({_S.SUCCEEDED, _S.FAILED, _S.QUEUED, _S.DEAD, _S.CANCELLED}),
    _S.FAILED: frozenset({_S.SCHEDULED, _S.DEAD}),
    _S.SUCCEEDED: frozenset(),
    _S.DEAD: frozenset({_S.QUEUED}),
    _S.CANCELLED: frozenset(),
}

TERMINAL: Final = frozenset({_S.SUCCEEDED, _S.DEAD, _S.CANCELLED})
WAITING: Final = frozenset({_S.QUEUED, _S.SCHEDULED})  # not yet claimed: what a tenant's cap counts


def can_move(current: TaskStatus, target: TaskStatus) -> bool:
    return target in _NEXT[current]


class Priority(IntEnum):
    LOW = 0
    NORMAL = 1
    HIGH = 2
    CRITICAL = 3

    @classmethod
    def parse(cls, value: object) -> Priority:
        """Accept a level name, an integer 0..3, or a boolean (`true` means high, as simple clients send)."""
        if isinstance(value, bool):
            return cls.HIGH if value else cls.NORMAL
        if isinstance(value, int) and 0 <= value <= 3:
            return cls(value)
        if isinstance(value, str) and value.upper() in cls.__members__:
            return cls[value.upper()]
        raise ValidationError(
            f"priority must be one of low, normal, high, critical, 0-3 or a boolean, not {value!r}", field="priority"
        )


class AttemptOutcome(StrEnum):
    """How one attempt ended. `lost`: its lease expired (the worker died or hung) and the poller took it back."""

    SUCCEEDED = "succeeded"
    RETRIED = "retried"
    DEAD = "dead"
    CANCELLED = "cancelled"
    RELEASED = "released"
    LOST = "lost"
    DEFERRED = "deferred"  # the handler raised Retry(after=...): rescheduled, the attempt given back
    RUNNING = "running"  # only in a view: the attempt under way (never stored)


HISTORY_LIMIT: Final = 20  # the attempts a task keeps: the last ones


@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt of a task, as its history keeps it (hexq.core.outcome writes these).

    Times are the backend's: started_at is the claim's stamp; finished_at is started_at plus the duration the
    worker measured on its monotonic clock (a lost attempt's is its lease's expiry, when the poller took it
    back), so no absolute time comes from a worker's clock. `token` is the lease's fencing token. `delay`:
    the backoff chosen when the attempt was retried. error and traceback are bounded (core.outcome).
    """

    number: int
    outcome: AttemptOutcome
    worker_id: str | None = None
    token: int | None = None
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    traceback: str | None = None
    delay: float | None = None


def new_task_id() -> str:
    """32 random hex digits, as uuid4().hex spelled them, at a tenth of the cost (no UUID object): a bulk
    submit of a thousand tasks spent more on its ids than on Redis."""
    return os.urandom(16).hex()


@dataclass(frozen=True, slots=True)
class Task:
    """One unit of work. Immutable: every change is a transition that returns a new Task."""

    id: str
    type: str
    payload: Mapping[str, JSON]
    queue: str = "default"
    priority: Priority = Priority.NORMAL
    status: TaskStatus = TaskStatus.QUEUED
    attempts: int = 0
    max_attempts: int = 3
    timeout: float = 300.0
    run_at: float = 0.0
    # Seconds the task waits from the moment a backend stores it: a submit's delay, a retry's backoff.
    # Processes send this duration and the backend adds its own clock (hexq.core.clock.stamped), so a host
    # whose clock is off cannot make a task due early or late. run_at is absolute only when a client
    # asked for a time.
    delay: float = 0.0
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    worker_id: str | None = None
    result: JSON = None
    error: str | None = None
    traceback: str | None = None  # of the failed attempt's exception, its last core.outcome.MAX_TRACEBACK chars
    idempotency_key: str | None = None
    tenant: str = "default"
    # The attempts that did not succeed, oldest first, the last HISTORY_LIMIT of them. A successful attempt is
    # never stored: the task's own fields (attempts, worker_id, started_at, finished_at) describe it.
    history: tuple[Attempt, ...] = ()

    def moved_to(self, status: TaskStatus, **changes: Any) -> Task:
        """Return this task in `status` with `changes` applied; raise InvalidTransition if not allowed."""
        if status not in _NEXT[self.status]:
            raise InvalidTransition(self.status, status)
        return _evolve(self, status, changes)

    def with_id(self, task_id: str) -> Task:
        """This task under another id (a backend that chooses ids: ports.TaskIds), at _evolve's cost."""
        return _evolve(self, self.status, {"id": task_id})

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL


def _evolver() -> Callable[[Task, TaskStatus, dict[str, Any]], Task]:
    """A copy of a Task with a new status and `changes`, as dataclasses.replace makes it but at under half
    its cost (it runs for every task a worker settles): one straight line per field, generated from the
    fields so that it cannot miss one. Like replace, an unknown field name is a TypeError."""
    names = [f.name for f in fields(Task)]
    lines = ["def evolve(task, status, changes):", "    new = new_(Task)"]
    lines += [f"    set_(new, {name!r}, task.{name})" for name in names if name != "status"]
    lines += ["    set_(new, 'status', status)",
              "    for name, value in changes.items():",
              "        if name not in known:",
              "            raise TypeError(f'Task has no field {name!r}')",
              "        set_(new, name, value)",
              "    return new"]
    scope: dict[str, Any] = {"new_": object.__new__, "set_": object.__setattr__, "Task": Task,
                             "known": frozenset(names) - {"status"}}
    exec("\n".join(lines), scope)  # as dataclasses builds __init__
    return cast(Callable[[Task, TaskStatus, dict[str, Any]], Task], scope["evolve"])


_evolve = _evolver()


def replaced(task: Task, /, **changes: Any) -> Task:
    """dataclasses.replace(task, **changes), at under half its cost: for changes that are not a transition
    (a backend stamping its times). Transitions go through Task.moved_to."""
    return _evolve(task, changes.pop("status", task.status), changes)


@dataclass(frozen=True, slots=True)
class Lease:
    """A worker's claim on a running task. `token` fences it: only the current token may settle.

    `cancel_requested`: someone asked to cancel the task while it runs (TaskStore.request_cancel); a
    heartbeat (Broker.extend) or a reclaim brings the news to whoever holds the lease.
    """

    task: Task
    token: int
    expires_at: float
    cancel_requested: bool = False


@dataclass(frozen=True, slots=True)
class Settlement:
    """The outcome a worker (or the reaper) writes for a leased task: the task in its new state."""

    lease: Lease
    task: Task


@dataclass(frozen=True, slots=True)
class TaskQuery:
    """A bounded, paginated listing. `cursor` is opaque and comes from a previous Page.

    `search`: keep only tasks whose payload, as compact JSON, or whose error message holds this text
    (case-sensitive; hexq.core.search). A backend examines at most `max_scan` records for one page: a page
    may then come back short, even empty, with a cursor that continues the scan.

    `priority`: that level only. `created_after` / `created_before`: the half-open window
    created_after <= created_at < created_before, epoch seconds on the backend's clock (half-open, so that
    consecutive windows never count a task twice; equal bounds make an empty window)."""

    status: TaskStatus | None = None
    type: str | None = None
    queue: str | None = None
    tenant: str | None = None
    limit: int = 50
    cursor: str | None = None
    search: str | None = None
    max_scan: int = 10_000
    priority: Priority | None = None
    created_after: float | None = None
    created_before: float | None = None


@dataclass(frozen=True, slots=True)
class Page:
    """`scanned`: the records the backend examined for this page, those the filters turned down included
    (what "12 matches in 40,000 scanned" counts); `complete` when there is nothing left to examine."""

    items: list[Task]
    next_cursor: str | None = None
    scanned: int = 0

    @property
    def complete(self) -> bool:
        return self.next_cursor is None


STATES: Final = ("queued", "running", "scheduled", "dead")  # the states Stats.depth counts by queue and priority


@dataclass(frozen=True, slots=True)
class Stats:
    """Counts by status; the queued depth by queue and priority; and, for metrics, the depth of every state
    in STATES by (queue, priority, state) and the age of the oldest queued task by (queue, priority):
    seconds since it became eligible (the later of created_at and run_at), on the backend's clock.
    A (queue, priority) with nothing in it may be absent from both. `paused`: the queues claims skip
    (QueueControl); their tasks are still counted above."""

    by_status: Mapping[TaskStatus, int] = field(default_factory=dict)
    queued: Mapping[str, Mapping[Priority, int]] = field(default_factory=dict)
    depth: Mapping[tuple[str, Priority, str], int] = field(default_factory=dict)
    oldest_age: Mapping[tuple[str, Priority], float] = field(default_factory=dict)
    paused: frozenset[str] = frozenset()

    @property
    def backlog(self) -> int:
        return sum(sum(levels.values()) for levels in self.queued.values())


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A live worker as the backend's registry lists it. started_at and last_seen are the backend's times,
    stamped when the worker registers and at each beat; `running` is how many tasks it ran at its last beat."""

    id: str
    host: str
    pid: int
    queues: tuple[str, ...]
    started_at: float = 0.0
    last_seen: float = 0.0
    running: int = 0

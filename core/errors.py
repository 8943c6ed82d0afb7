"""The domain's error hierarchy. The API maps each to one HTTP status."""

from __future__ import annotations

import math


class QueueError(Exception):
    """Base of every error hexq raises on purpose."""


class ValidationError(QueueError):
    """A request is well-formed JSON but breaks the task schema (field named in `field`)."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class UnknownTaskType(ValidationError):
    """No handler is registered for the task type."""


class TaskNotFound(QueueError):
    """No task with that id (or not visible to the caller's tenant)."""


class ScheduleNotFound(QueueError):
    """No schedule with that name."""


class ScheduleNameTaken(QueueError):
    """Schedule names are global, and this one belongs to another tenant."""


class IdempotencyMismatch(QueueError):
    """The idempotency key was used before for a different request."""


class InvalidTransition(QueueError):
    """A status change that the transition table does not allow."""

    def __init__(self, current: str, target: str) -> None:
        # Statuses are StrEnums: str() gives "running", where !r gave "<TaskStatus.RUNNING: 'running'>".
        super().__init__(f"cannot move a task from {str(current)!r} to {str(target)!r}")
        self.current = current
        self.target = target


class StaleLease(QueueError):
    """The lease's fencing token is no longer current: another worker owns the task now."""


class BackendUnavailable(QueueError):
    """The backend cannot be reached or is not ready; the caller should retry later."""

    def __init__(self, backend: str, message: str = "backend unavailable", *, retry_after: float = 1.0) -> None:
        super().__init__(f"{backend}: {message}")
        self.backend = backend
        self.retry_after = retry_after


class ConfigurationError(QueueError):
    """A setting has a value hexq cannot use."""


class QueueFull(QueueError):
    """The tenant already has its cap of waiting (queued or scheduled) tasks; retry after some finish."""

    def __init__(self, tenant: str, limit: int, *, retry_after: float = 5.0) -> None:
        super().__init__(f"tenant {tenant!r} already has {limit} or more queued tasks, the most it may have")
        self.tenant = tenant
        self.limit = limit
        self.retry_after = retry_after


class Overloaded(QueueError):
    """The queue is past a back-pressure cap (core/backpressure.py): its backlog, or its oldest task's age.
    Nothing was enqueued; retry after `retry_after` seconds. Unlike QueueFull, it is the same for every caller."""

    def __init__(self, queue: str, reason: str, *, backlog: int, max_backlog: int, oldest_age: float,
                 max_oldest_age: float, retry_after: float) -> None:
        if reason == "oldest_age":
            why = f"its oldest task has waited {oldest_age:.0f}s, the cap is {max_oldest_age:g}s"
        else:
            why = f"{backlog} tasks are queued, the cap is {max_backlog}"
        super().__init__(f"queue {queue!r} is overloaded: {why}; retry in {math.ceil(retry_after)}s")
        self.queue = queue
        self.reason = reason
        self.backlog = backlog
        self.max_backlog = max_backlog
        self.oldest_age = oldest_age
        self.max_oldest_age = max_oldest_age
        self.retry_after = retry_after


class ConfirmMismatch(QueueError):
    """More tasks match a bulk action's filter than the caller confirmed (core.bulk); nothing was changed."""

    def __init__(self, matched: int, confirm: int) -> None:
        super().__init__(f"{matched} or more tasks match now, {confirm} were confirmed: count again (dry run)")
        self.matched = matched
        self.confirm = confirm

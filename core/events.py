"""Task events: what happened to a task, told to whoever observes (metrics, logs), never to the backend.

The worker, the poller and the services call an `Events` object at the moment something happens; the
composition root passes one that counts (Prometheus) and logs (one JSON line per event), tests pass a
recorder, and `NO_EVENTS` ignores everything. Every method is cheap and must not raise: an observer
that fails must not fail a task.

Times are the backend's (core.clock.stamped): a task's created_at, run_at, started_at and finished_at
all come from one clock, so `queue wait` (eligible to start) and `end to end` (created to finished)
are differences of times on one clock, whatever the observing process's own clock says.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from hexq.core.model import Task


class Events(Protocol):
    def submitted(self, tasks: Sequence[Task]) -> None:
        """New tasks were stored (not those an idempotency key answered with an earlier task)."""

    def rejected(self, reason: str) -> None:
        """A submit was refused: validation, unknown_type, body_too_large, rate_limited, queue_full, overloaded,
        backend_unavailable, idempotency_mismatch."""

    def started(self, task: Task) -> None:
        """A worker began an attempt (the task as claimed: running, started_at set)."""

    def finished(self, task: Task, after: Task, seconds: float) -> None:
        """An attempt ended after `seconds` of running, and the backend took `after` (succeeded, scheduled
        for a retry, dead, cancelled, or queued when released)."""

    def fenced(self, op: str, task: Task) -> None:
        """The backend refused a stale lease token: `op` is settle or heartbeat."""

    def recovered(self, task: Task) -> None:
        """The poller took over an expired lease (the worker died or hung): `task` as the poller settled it,
        scheduled for a retry, dead, or cancelled (if a cancel was asked for while its worker was lost)."""

    def cancelled(self, task: Task) -> None:
        """A waiting task was cancelled (a running one is `finished` cancelled by its worker)."""

    def replayed(self, tasks: Sequence[Task]) -> None:
        """Dead tasks went back to the queue."""

    def schedule_fired(self, name: str, lag: float) -> None:
        """A schedule fired `lag` seconds after its due time."""

    def rate_waited(self, task_type: str, seconds: float) -> None:
        """A task of a rate-limited type waited this long for a token (holding its lease)."""

    def deferred(self, task: Task, after: Task, reason: str) -> None:
        """A claimed task was given back with its attempt unused, to run again after `after.delay` seconds:
        reason `retry` (its handler raised Retry(after=...)) or `breaker` (its circuit breaker is open)."""

    def circuit_changed(self, name: str, before: str, after: str) -> None:
        """This process moved circuit breaker `name` from one state to another (closed, open, half_open)."""


class NoEvents:
    """Observes nothing."""

    def submitted(self, tasks: Sequence[Task]) -> None: ...

    def rejected(self, reason: str) -> None: ...

    def started(self, task: Task) -> None: ...

    def finished(self, task: Task, after: Task, seconds: float) -> None: ...

    def fenced(self, op: str, task: Task) -> None: ...

    def recovered(self, task: Task) -> None: ...

    def cancelled(self, task: Task) -> None: ...

    def replayed(self, tasks: Sequence[Task]) -> None: ...

    def schedule_fired(self, name: str, lag: float) -> None: ...

    def rate_waited(self, task_type: str, seconds: float) -> None: ...

    def deferred(self, task: Task, after: Task, reason: str) -> None: ...

    def circuit_changed(self, name: str, before: str, after: str) -> None: ...


NO_EVENTS: Events = NoEvents()


def queue_wait(task: Task) -> float | None:
    """Seconds from when the task became eligible (due: the later of created_at and run_at) to its start,
    on the backend's clock; None before it started. A deliberate delay is not waiting."""
    if task.started_at is None:
        return None
    return max(0.0, task.started_at - max(task.created_at, task.run_at))

"""Task events in the logs: one JSON line per event on the `hexq.events` logger, and fan_out to several observers.

Each line is an INFO record whose fields come in through `extra`, so the JSON formatter (functions/logs.py)
puts them at the top level: `{"message": "task retried", "event": "retried", "task_id": ..., "type": ...,
"queue": ..., "priority": "high", "attempt": 2, "worker_id": ..., "status": "scheduled", "duration": 0.42,
"retry_in": 1.7, "error": "ValueError: ..."}`. HEXQ_TASK_EVENTS=off (--no-task-events) turns them off.

Nothing is built when the logger would drop the line (level above INFO): the check comes first.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from hexq.core.events import NO_EVENTS, Events, queue_wait
from hexq.core.model import Task, TaskStatus
from hexq.functions.settings import Settings

log = logging.getLogger("hexq.events")
_fan_log = logging.getLogger("hexq.functions.task_events")

MAX_ERROR = 200  # characters of a failure's error kept in its line; the task keeps all of it

# What an attempt that ended in `after.status` is called in the logs.
OUTCOMES = {TaskStatus.SUCCEEDED: "succeeded", TaskStatus.SCHEDULED: "retried", TaskStatus.DEAD: "dead",
            TaskStatus.CANCELLED: "cancelled", TaskStatus.QUEUED: "released"}


def log_events(settings: Settings) -> Events:
    """The log observer, or NO_EVENTS when HEXQ_TASK_EVENTS is off."""
    return LogEvents() if settings.task_events else NO_EVENTS


class LogEvents:
    """Events as JSON log lines on `logger` (hexq.events), at INFO."""

    def __init__(self, logger: logging.Logger = log) -> None:
        self._log = logger

    def submitted(self, tasks: Sequence[Task]) -> None:
        if self._log.isEnabledFor(logging.INFO):
            for task in tasks:
                self._line("submitted", task_fields(task) | {"status": task.status.value})

    def rejected(self, reason: str) -> None:
        if self._log.isEnabledFor(logging.INFO):
            self._line("rejected", {"reason": reason})

    def started(self, task: Task) -> None:
        if self._log.isEnabledFor(logging.INFO):
            fields = task_fields(task)
            wait = queue_wait(task)
            if wait is not None:
                fields["wait"] = round(wait, 6)
            self._line("started", fields)

    def finished(self, task: Task, after: Task, seconds: float) -> None:
        if self._log.isEnabledFor(logging.INFO):
            fields = task_fields(task) | {"status": after.status.value, "duration": round(seconds, 6)}
            if after.status is TaskStatus.SCHEDULED:
                fields["retry_in"] = round(retry_delay(after, task, seconds), 6)
            if after.error and after.status is not TaskStatus.SUCCEEDED:
                fields["error"] = short(after.error)
            self._line(OUTCOMES.get(after.status, after.status.value), fields)

    def fenced(self, op: str, task: Task) -> None:
        if self._log.isEnabledFor(logging.INFO):
            self._line("fenced", task_fields(task) | {"op": op})

    def recovered(self, task: Task) -> None:
        if self._log.isEnabledFor(logging.INFO):
            self._line("recovered", task_fields(task))

    def cancelled(self, task: Task) -> None:
        if self._log.isEnabledFor(logging.INFO):
            self._line("cancelled", task_fields(task) | {"status": TaskStatus.CANCELLED.value})

    def replayed(self, tasks: Sequence[Task]) -> None:
        if self._log.isEnabledFor(logging.INFO):
            for task in tasks:
                self._line("replayed", task_fields(task))

    def schedule_fired(self, name: str, lag: float) -> None:
        if self._log.isEnabledFor(logging.INFO):
            self._line("schedule_fired", {"schedule": name, "lag": round(lag, 6)}, "schedule fired")

    def rate_waited(self, task_type: str, seconds: float) -> None:
        if self._log.isEnabledFor(logging.INFO):
            self._line("rate_waited", {"type": task_type, "wait": round(seconds, 6)}, "task waited for its rate")

    def deferred(self, task: Task, after: Task, reason: str) -> None:
        if self._log.isEnabledFor(logging.INFO):
            self._line("deferred", task_fields(task) | {"reason": reason, "retry_in": round(after.delay, 6)})

    def circuit_changed(self, name: str, before: str, after: str) -> None:
        if self._log.isEnabledFor(logging.INFO):
            self._line("circuit_changed", {"breaker": name, "from": before, "to": after}, f"breaker {name} {after}")

    def _line(self, event: str, fields: dict[str, Any], message: str | None = None) -> None:
        fields["event"] = event
        self._log.info(message or f"task {event}", extra=fields)


def task_fields(task: Task) -> dict[str, Any]:
    """The fields every task's line has (never its payload, result or tenant: they may be private)."""
    return {"task_id": task.id, "type": task.type, "queue": task.queue, "priority": task.priority.name.lower(),
            "attempt": task.attempts, "worker_id": task.worker_id}


def retry_delay(after: Task, task: Task, seconds: float) -> float:
    """How long a retried task waits: its backoff (`delay`, which the backend adds to its clock), or, from a
    task the backend already stamped without it, run_at less the attempt's end."""
    if after.delay > 0 or task.started_at is None:
        return after.delay
    return max(0.0, after.run_at - (task.started_at + seconds))


def short(error: str) -> str:
    """The first line of an error, at most MAX_ERROR characters."""
    line = error.strip().split("\n", 1)[0]
    return line if len(line) <= MAX_ERROR else line[:MAX_ERROR - 3] + "..."


def fan_out(*observers: Events) -> Events:
    """One Events that tells each of `observers` (NO_EVENTS left out; a lone observer is returned as is).

    An observer that raises is logged once, then ignored for that failure: it cannot fail the task, nor keep
    the others from hearing of it.
    """
    wanted = tuple(o for o in observers if o is not NO_EVENTS)
    if not wanted:
        return NO_EVENTS
    return wanted[0] if len(wanted) == 1 else FanOut(wanted)


class FanOut:
    def __init__(self, observers: Sequence[Events]) -> None:
        self.observers = tuple(observers)
        self._failed: set[int] = set()  # indexes of the observers whose failure was logged already

    def submitted(self, tasks: Sequence[Task]) -> None:
        self._each("submitted", tasks)

    def rejected(self, reason: str) -> None:
        self._each("rejected", reason)

    def started(self, task: Task) -> None:
        self._each("started", task)

    def finished(self, task: Task, after: Task, seconds: float) -> None:
        self._each("finished", task, after, seconds)

    def fenced(self, op: str, task: Task) -> None:
        self._each("fenced", op, task)

    def recovered(self, task: Task) -> None:
        self._each("recovered", task)

    def cancelled(self, task: Task) -> None:
        self._each("cancelled", task)

    def replayed(self, tasks: Sequence[Task]) -> None:
        self._each("replayed", tasks)

    def schedule_fired(self, name: str, lag: float) -> None:
        self._each("schedule_fired", name, lag)

    def rate_waited(self, task_type: str, seconds: float) -> None:
        self._each("rate_waited", task_type, seconds)

    def deferred(self, task: Task, after: Task, reason: str) -> None:
        self._each("deferred", task, after, reason)

    def circuit_changed(self, name: str, before: str, after: str) -> None:
        self._each("circuit_changed", name, before, after)

    def _each(self, method: str, *args: Any) -> None:
        for index, observer in enumerate(self.observers):
            try:
                getattr(observer, method)(*args)
            except Exception:  # an observer's bug must not fail a task: say so once, keep going
                if index not in self._failed:
                    self._failed.add(index)
                    _fan_log.exception("task event observer %s failed in %s; its later failures are not logged",
                                       type(observer).__name__, method)

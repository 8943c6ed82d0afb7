"""PrometheusEvents: hexq.core.events.Events counted into Prometheus instruments.

The worker calls `started` and `finished` once per task, so they are the hot path: the labelled
children of each (type, queue, priority[, status]) are looked up once and kept in a dict keyed by the
task's own fields, and a call is then a dict lookup and a few increments. Label values are bounded
(`Labels`): a type or queue this process does not know counts as "other", so a client cannot mint series.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from hexq.core.events import queue_wait
from hexq.core.model import Priority, Task, TaskStatus
from hexq.functions.metrics.instruments import TaskInstruments
from hexq.functions.metrics.values import Observer, Values

log = logging.getLogger("hexq.metrics")

OTHER = "other"
MAX_CACHED = 4096  # children cached per kind; past it (unknown names) they are looked up each time
PRIORITIES = {p: p.name.lower() for p in Priority}
# What an attempt's outcome counts as in hexq_tasks_processed_total{status}.
STATUSES = {TaskStatus.SUCCEEDED: "succeeded", TaskStatus.SCHEDULED: "failed", TaskStatus.DEAD: "dead",
            TaskStatus.CANCELLED: "cancelled", TaskStatus.QUEUED: "released", TaskStatus.FAILED: "failed"}
FINAL = frozenset({TaskStatus.SUCCEEDED, TaskStatus.DEAD, TaskStatus.CANCELLED})
TIMEOUT_PREFIX = "timeout"  # hexq.core.running's error for an attempt past its timeout


class Labels:
    """Label values a process may use: registered task types and known queues, else "other"."""

    def __init__(self, types: Iterable[str], queues: Iterable[str]) -> None:
        self._types = frozenset(types)
        self._queues = frozenset(queues) | {"default"}

    def type(self, name: str) -> str:
        return name if name in self._types else OTHER

    def queue(self, name: str) -> str:
        return name if name in self._queues else OTHER

    @staticmethod
    def priority(priority: Priority) -> str:
        return PRIORITIES.get(priority, OTHER)


class _Outcome:
    """The children one (type, queue, priority, outcome status) moves when an attempt ends."""

    __slots__ = ("attempts", "dead", "duration", "end_to_end", "processed", "retry_error", "retry_timeout",
                 "cancelled")

    def __init__(self, i: TaskInstruments, v: Values, labels: Labels, task: Task, status: TaskStatus) -> None:
        kind, queue, priority = labels.type(task.type), labels.queue(task.queue), labels.priority(task.priority)
        name = STATUSES.get(status, OTHER)
        self.processed = v.counter(i.processed.labels(kind, queue, priority, name))
        self.duration = v.histogram(i.duration.labels(kind, queue, name))
        final = status in FINAL
        self.end_to_end = v.histogram(i.end_to_end.labels(kind, queue, priority, name)) if final else None
        self.attempts = v.histogram(i.attempts.labels(kind, name)) if final else None
        self.dead = v.counter(i.dead_lettered.labels(kind, queue)) if status is TaskStatus.DEAD else None
        self.cancelled = v.counter(i.cancelled.labels(kind, queue)) if status is TaskStatus.CANCELLED else None
        retry = status is TaskStatus.SCHEDULED
        self.retry_error = v.counter(i.retries.labels(kind, queue, "error")) if retry else None
        self.retry_timeout = v.counter(i.retries.labels(kind, queue, "timeout")) if retry else None


class PrometheusEvents:
    """Counts task events. Never raises: a failure is logged once and the event dropped."""

    def __init__(self, instruments: TaskInstruments, labels: Labels, values: Values | None = None) -> None:
        self._i = instruments
        self._labels = labels
        self.values = values or Values()
        self._waits: dict[tuple[str, str, Priority], Observer] = {}
        self._outcomes: dict[tuple[str, str, Priority, TaskStatus], _Outcome] = {}
        self._warned = False

    def zero(self, types: Iterable[tuple[str, str]], reasons: Iterable[str]) -> None:
        """Export the counters alerts watch at 0 before anything happens: a series that first appears at 1 has
        no increase() to Prometheus, so the first dead letter or fencing rejection would never alert. `types`
        are (type, its queue) pairs; `reasons` the submit-refusal reasons."""
        i, labels = self._i, self._labels
        for op in ("settle", "heartbeat"):
            i.fencing.labels(op)
        for reason in reasons:
            i.rejections.labels(reason)
        for name, queue in types:
            kind, where = labels.type(name), labels.queue(queue)
            i.dead_lettered.labels(kind, where)
            i.recoveries.labels(kind, where)
            for reason in ("error", "timeout", "lease_expired"):
                i.retries.labels(kind, where, reason)

    # -- the worker's hot path --------------------------------------------------------------------------
    def started(self, task: Task) -> None:
        try:
            wait = queue_wait(task)  # core's one definition of "eligible"
            if wait is None:
                return
            key = (task.type, task.queue, task.priority)
            child = self._waits.get(key)
            if child is None:
                child = self._wait_child(key)
            child.observe(wait)
        except Exception as exc:
            self._failed(exc)

    def finished(self, task: Task, after: Task, seconds: float) -> None:
        try:
            status = after.status
            key = (task.type, task.queue, task.priority, status)
            o = self._outcomes.get(key)
            if o is None:
                o = self._outcome(key, task, status)
            o.processed.inc(1.0)
            o.duration.observe(seconds)
            if o.end_to_end is not None:
                self._ended(o, task, after, seconds)
            elif o.retry_error is not None and o.retry_timeout is not None:
                (o.retry_timeout if (after.error or "").startswith(TIMEOUT_PREFIX) else o.retry_error).inc(1.0)
        except Exception as exc:
            self._failed(exc)

    def _ended(self, o: _Outcome, task: Task, after: Task, seconds: float) -> None:
        # The settled task is not stamped yet (the backend stamps finished_at as it stores it): its
        # start on the backend's clock plus the seconds it ran is when it finished.
        finished_at = after.finished_at
        if finished_at is None:
            finished_at = (task.started_at or task.created_at) + seconds
        o.end_to_end.observe(max(0.0, finished_at - task.created_at))  # type: ignore[union-attr]
        o.attempts.observe(after.attempts)  # type: ignore[union-attr]
        if o.dead is not None:
            o.dead.inc(1.0)
        elif o.cancelled is not None:
            o.cancelled.inc(1.0)

    def _wait_child(self, key: tuple[str, str, Priority]) -> Observer:
        kind, queue, priority = key
        child = self.values.histogram(self._i.queue_wait.labels(self._labels.type(kind), self._labels.queue(queue),
                                                                self._labels.priority(priority)))
        if len(self._waits) < MAX_CACHED:
            self._waits[key] = child
        return child

    def _outcome(self, key: tuple[str, str, Priority, TaskStatus], task: Task, status: TaskStatus) -> _Outcome:
        outcome = _Outcome(self._i, self.values, self._labels, task, status)
        if len(self._outcomes) < MAX_CACHED:
            self._outcomes[key] = outcome
        return outcome

    # -- everything else: once per submit, sweep or firing ------------------------------------------------
    def submitted(self, tasks: Sequence[Task]) -> None:
        try:
            labels, counter = self._labels, self._i.submitted
            for task in tasks:
                kind, queue = labels.type(task.type), labels.queue(task.queue)
                counter.labels(kind, queue, labels.priority(task.priority)).inc(1.0)
        except Exception as exc:
            self._failed(exc)

    def rejected(self, reason: str) -> None:
        try:
            self._i.rejections.labels(reason).inc(1.0)
        except Exception as exc:
            self._failed(exc)

    def fenced(self, op: str, task: Task) -> None:
        try:
            self._i.fencing.labels(op).inc(1.0)
        except Exception as exc:
            self._failed(exc)

    def recovered(self, task: Task) -> None:
        """The poller settled an expired lease: a retry (lease_expired), a dead letter, or a cancel."""
        try:
            kind, queue = self._labels.type(task.type), self._labels.queue(task.queue)
            self._i.recoveries.labels(kind, queue).inc()
            if task.status is TaskStatus.SCHEDULED:
                self._i.retries.labels(kind, queue, "lease_expired").inc()
            elif task.status in FINAL:
                status = STATUSES[task.status]
                self._i.attempts.labels(kind, status).observe(task.attempts)
                if task.status is TaskStatus.DEAD:
                    self._i.dead_lettered.labels(kind, queue).inc()
                elif task.status is TaskStatus.CANCELLED:
                    self._i.cancelled.labels(kind, queue).inc(1.0)
        except Exception as exc:
            self._failed(exc)

    def cancelled(self, task: Task) -> None:
        try:
            self._i.cancelled.labels(self._labels.type(task.type), self._labels.queue(task.queue)).inc(1.0)
        except Exception as exc:
            self._failed(exc)

    def replayed(self, tasks: Sequence[Task]) -> None:
        try:
            for task in tasks:
                self._i.replays.labels(self._labels.type(task.type), self._labels.queue(task.queue)).inc(1.0)
        except Exception as exc:
            self._failed(exc)

    def schedule_fired(self, name: str, lag: float) -> None:
        try:
            self._i.schedule_fires.labels(name).inc()
            self._i.schedule_lag.observe(lag)
        except Exception as exc:
            self._failed(exc)

    def rate_waited(self, task_type: str, seconds: float) -> None:
        try:
            self._i.rate_waits.labels(self._labels.type(task_type)).inc()
            self._i.rate_wait.observe(seconds)
        except Exception as exc:
            self._failed(exc)

    def deferred(self, task: Task, after: Task, reason: str) -> None:
        try:
            self._i.deferrals.labels(self._labels.type(task.type), reason).inc(1.0)
        except Exception as exc:
            self._failed(exc)

    def circuit_changed(self, name: str, before: str, after: str) -> None:
        try:
            self._i.circuit_transitions.labels(name, after).inc(1.0)
        except Exception as exc:
            self._failed(exc)

    def _failed(self, exc: Exception) -> None:
        if not self._warned:  # once: a broken observer must not flood the log either
            self._warned = True
            log.warning("metrics: an event could not be counted (%s: %s); counting goes on", type(exc).__name__, exc,
                        exc_info=exc)

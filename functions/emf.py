"""Metrics on AWS Lambda: task events as CloudWatch Embedded Metric Format (EMF) lines on stdout.

A Lambda function has no /metrics to scrape and a pushgateway would keep dead series forever, so the
Lambda entry points count task events here, per invocation, and `flush()` prints them when the
invocation ends: CloudWatch Logs turns each line into metrics, with no call to any AWS API and no
added latency. The names and dimensions are the Prometheus ones (hexq_tasks_processed_total by type,
queue, priority, status...), so a dashboard maps one to one.

A line per outcome of a type, queue and priority (a set of dimension values that another includes shares its
line), its counters summed and each distribution carried as `{"Values": [...], "Counts": [...]}` (values
rounded to 20 steps per decade, within 6%), so a thousand tasks of one type make one line, not a thousand.
The EMF limits hold: at most 100 metrics per line (MAX_METRICS), at most 100 values per distribution
(MAX_VALUES; more go on a further line) and dimension sets far below 30 keys.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from hexq.core.events import Events, queue_wait
from hexq.core.model import Task, TaskStatus
from hexq.functions.settings import Settings
from hexq.functions.task_events import fan_out, log_events

log = logging.getLogger("hexq.emf")

NAMESPACE = "hexq"
MAX_METRICS = 100  # per EMF document
MAX_VALUES = 100  # per metric value array
STEPS_PER_DECADE = 20
# A distribution's unit where it is not seconds (counters are Count).
UNITS = {"hexq_task_attempts": "Count"}

Dimensions = tuple[tuple[str, str], ...]  # sorted (name, value) pairs
Histogram = dict[float, int]  # value (rounded) -> how many times
_Member = tuple[tuple[str, ...], str, str, object]  # dimension names, metric name, unit, value


def lambda_events(settings: Settings) -> EmfEvents:
    """The Lambda entry points' metrics observer (flushed at the end of each invocation)."""
    return EmfEvents()


def on_lambda(settings: Settings) -> Events:
    """What a Lambda function's container tells of task events: the log lines and the EMF metrics."""
    return fan_out(log_events(settings), lambda_events(settings))


def _stdout(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class EmfEvents:
    """Counts and distributions of task events since the last flush(), printed as EMF lines by flush()."""

    def __init__(self, namespace: str = NAMESPACE, write: Callable[[str], None] = _stdout,
                 clock: Callable[[], float] = time.time) -> None:
        self._namespace = namespace
        self._write = write
        self._clock = clock
        self._counts: dict[Dimensions, dict[str, float]] = {}
        self._values: dict[Dimensions, dict[str, Histogram]] = {}

    def submitted(self, tasks: Sequence[Task]) -> None:
        for task in tasks:
            self._count("hexq_tasks_submitted_total", _labels(task, priority=True))

    def rejected(self, reason: str) -> None:
        self._count("hexq_submit_rejections_total", {"reason": reason})

    def started(self, task: Task) -> None:
        wait = queue_wait(task)
        if wait is not None:
            self._observe("hexq_task_queue_wait_seconds", _labels(task, priority=True), wait)

    def finished(self, task: Task, after: Task, seconds: float) -> None:
        status = processed_status(after)
        self._count("hexq_tasks_processed_total", _labels(task, priority=True) | {"status": status})
        self._observe("hexq_task_duration_seconds", _labels(task) | {"status": status}, seconds)
        if after.status is TaskStatus.SCHEDULED:
            self._count("hexq_task_retries_total", _labels(task) | {"reason": retry_reason(after)})
        elif after.status is TaskStatus.DEAD:
            self._count("hexq_tasks_dead_lettered_total", _labels(task))
        elif after.status is TaskStatus.CANCELLED:
            self._count("hexq_tasks_cancelled_total", _labels(task))
        if after.is_terminal:
            end = after.finished_at if after.finished_at is not None else (task.started_at or 0.0) + seconds
            if task.created_at:
                self._observe("hexq_task_end_to_end_seconds", _labels(task, priority=True) | {"status": status},
                              max(0.0, end - task.created_at))
            self._observe("hexq_task_attempts", {"type": task.type, "status": status}, after.attempts)

    def fenced(self, op: str, task: Task) -> None:
        self._count("hexq_fencing_rejections_total", {"op": op, "type": task.type})

    def recovered(self, task: Task) -> None:
        self._count("hexq_lease_recoveries_total", _labels(task))

    def cancelled(self, task: Task) -> None:
        self._count("hexq_tasks_cancelled_total", _labels(task))

    def replayed(self, tasks: Sequence[Task]) -> None:
        for task in tasks:
            self._count("hexq_dead_letter_replays_total", _labels(task))

    def schedule_fired(self, name: str, lag: float) -> None:
        self._count("hexq_schedule_fires_total", {"schedule": name})
        self._observe("hexq_schedule_lag_seconds", {"schedule": name}, lag)

    def rate_waited(self, task_type: str, seconds: float) -> None:
        self._count("hexq_type_rate_limit_waits_total", {"type": task_type})
        self._observe("hexq_type_rate_limit_wait_seconds", {"type": task_type}, seconds)

    def deferred(self, task: Task, after: Task, reason: str) -> None:
        self._count("hexq_task_deferrals_total", {"type": task.type, "reason": reason})

    def circuit_changed(self, name: str, before: str, after: str) -> None:
        self._count("hexq_circuit_transitions_total", {"breaker": name, "state": after})

    def flush(self) -> None:
        """Print what was counted since the last flush as EMF lines, and start again from nothing. Never raises:
        it runs as an invocation ends, and metrics must not fail it."""
        if not self._counts and not self._values:
            return
        counts, values, self._counts, self._values = self._counts, self._values, {}, {}
        try:
            for line in documents(self._namespace, counts, values, int(self._clock() * 1000)):
                self._write(json.dumps(line, separators=(",", ":")))
        except Exception:
            log.exception("could not write the invocation's EMF metrics")

    def _count(self, name: str, labels: Mapping[str, str]) -> None:
        metrics = self._counts.setdefault(_key(labels), {})
        metrics[name] = metrics.get(name, 0) + 1

    def _observe(self, name: str, labels: Mapping[str, str], value: float) -> None:
        histogram = self._values.setdefault(_key(labels), {}).setdefault(name, {})
        step = bucket(value) if UNITS.get(name, "Seconds") == "Seconds" else value
        histogram[step] = histogram.get(step, 0) + 1


def documents(namespace: str, counts: Mapping[Dimensions, Mapping[str, float]],
              values: Mapping[Dimensions, Mapping[str, Histogram]], timestamp: int) -> Iterator[dict[str, Any]]:
    """EMF documents, as few as the limits allow: a set of dimension values that another one includes shares
    its document (one directive per set of dimension names: the attempt's duration, by type, queue and status,
    rides on the line of its count by type, queue, priority and status)."""
    docs: list[tuple[dict[str, str], list[_Member]]] = []
    for dims in sorted(dict.fromkeys([*counts, *values]), key=len, reverse=True):
        names = tuple(name for name, _ in dims)
        members: list[_Member] = [(names, name, "Count", n) for name, n in counts.get(dims, {}).items()]
        for name, histogram in values.get(dims, {}).items():
            members += [(names, name, UNITS.get(name, "Seconds"), part) for part in _distribution(histogram)]
        home = next((doc for doc in docs if doc[0].items() >= set(dims)), None)
        if home is None:
            docs.append((dict(dims), members))
        else:
            home[1].extend(members)
    for top, members in docs:
        yield from _pack(namespace, top, members, timestamp)


def _pack(namespace: str, top: dict[str, str], members: list[_Member], timestamp: int) -> Iterator[dict[str, Any]]:
    """Members into documents: a name at most once per document, at most MAX_METRICS in each."""
    while members:
        taken: dict[str, _Member] = {}
        rest: list[_Member] = []
        for member in members:
            if member[1] in taken or len(taken) == MAX_METRICS:
                rest.append(member)
            else:
                taken[member[1]] = member
        members = rest
        directives: dict[tuple[str, ...], list[dict[str, str]]] = {}
        for names, name, unit, _ in taken.values():
            directives.setdefault(names, []).append({"Name": name, "Unit": unit})
        yield {"_aws": {"Timestamp": timestamp, "CloudWatchMetrics": [
                   {"Namespace": namespace, "Dimensions": [list(names)], "Metrics": metrics}
                   for names, metrics in directives.items()]},
               **top, **{name: value for _, name, _, value in taken.values()}}


def _distribution(histogram: Histogram) -> Iterator[dict[str, Any]]:
    """EMF value arrays of at most MAX_VALUES distinct values, with their statistics."""
    steps = sorted(histogram)
    for start in range(0, len(steps), MAX_VALUES):
        part = steps[start:start + MAX_VALUES]
        counts = [histogram[v] for v in part]
        yield {"Values": part, "Counts": counts, "Min": part[0], "Max": part[-1], "Count": sum(counts),
               "Sum": sum(v * n for v, n in zip(part, counts, strict=True))}


def bucket(value: float) -> float:
    """`value` rounded to one of STEPS_PER_DECADE steps per decade (at most 6% off), 0 for none or less."""
    if value <= 0 or not math.isfinite(value):
        return 0.0
    step = round(math.log10(value) * STEPS_PER_DECADE) / STEPS_PER_DECADE
    return float(f"{10 ** step:.4g}")


def processed_status(after: Task) -> str:
    """hexq_tasks_processed_total's status for an attempt that ended in `after`."""
    if after.status is TaskStatus.SUCCEEDED:
        return "succeeded"
    if after.status in (TaskStatus.CANCELLED, TaskStatus.QUEUED):
        return "cancelled" if after.status is TaskStatus.CANCELLED else "released"
    return "timed_out" if retry_reason(after) == "timeout" else "failed"


def retry_reason(after: Task) -> str:
    """error, timeout or lease_expired: how the attempt failed (core.running and core.outcome word them)."""
    error = after.error or ""
    if error.startswith("timeout:"):
        return "timeout"
    return "lease_expired" if error.startswith("lease expired") else "error"


def _labels(task: Task, *, priority: bool = False) -> dict[str, str]:
    labels = {"type": task.type, "queue": task.queue}
    if priority:
        labels["priority"] = task.priority.name.lower()
    return labels


def _key(labels: Mapping[str, str]) -> Dimensions:
    return tuple(sorted(labels.items()))


def flush(events: Events) -> None:
    """Flush every EmfEvents in `events` (itself, or inside a fan_out); a Lambda handler calls it last."""
    if isinstance(events, EmfEvents):
        events.flush()
    for inner in getattr(events, "observers", ()):
        flush(inner)

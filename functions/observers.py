"""Who hears of task events (core.events) in a process that serves: the API, a worker, the poller, `hexq serve`
and its pool. One-shot commands and the Python client are clients: they tell nobody (bootstrap's default).
On Lambda, functions/emf.py's on_lambda takes this place."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hexq.core.events import NO_EVENTS, Events
from hexq.functions.settings import Settings
from hexq.functions.task_events import fan_out, log_events

if TYPE_CHECKING:
    from hexq.functions.metrics.process import Metrics


def serving_events(settings: Settings, metrics: Metrics | None = None) -> Events:
    """The task-event log lines (HEXQ_TASK_EVENTS) and the metrics' observer (HEXQ_METRICS)."""
    return fan_out(log_events(settings), metrics.events if metrics is not None else NO_EVENTS)

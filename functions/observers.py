"""Who hears of task events (core.events) in a process that serves: the API, a worker, the poller, `hexq serve`
and its pool. One-shot commands and the Python client are clients: they tell nobody (bootstrap's default).
On Lambda, functions/emf.py's on_lambda takes this place."""

from __future__ import annotations

from hexq.core.events import Events
from hexq.functions.settings import Settings
from hexq.functions.task_events import fan_out, log_events


def serving_events(settings: Settings) -> Events:
    """The task-event log lines (HEXQ_TASK_EVENTS)."""
    return fan_out(log_events(settings))

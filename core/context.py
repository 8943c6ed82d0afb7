"""The task a handler is running, for handlers that need their id or attempt number.

    from hexq.core.context import current_task
    task = current_task()      # inside a handler: the Task, with .id, .attempts, .max_attempts ...

A context variable, so concurrent handlers on one loop each see their own task, and sync
handlers (run in threads by asyncio.to_thread, which copies the context) see theirs too.
"""

from __future__ import annotations

from contextvars import ContextVar

from hexq.core.model import Task

_CURRENT: ContextVar[Task] = ContextVar("hexq_current_task")


def current_task() -> Task:
    """The running task; raises LookupError when called outside a handler."""
    return _CURRENT.get()


def bind(task: Task) -> None:
    """Called by the worker in the asyncio task that runs the handler (each has its own context)."""
    _CURRENT.set(task)

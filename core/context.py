"""The task a handler is running, for handlers that need their id, attempt number or cancellation.

    from hexq.core.context import current_task
    task = current_task()      # inside a handler: .id, .attempts, .max_attempts ... of the Task
    if task.cancelled: ...     # someone cancelled it while it runs: stop (sync handlers must look)

A context variable, so concurrent handlers on one loop each see their own task, and sync
handlers (run in threads by asyncio.to_thread, which copies the context) see theirs too.
"""

from __future__ import annotations

import threading
from contextvars import ContextVar
from typing import Any

from hexq.core.model import Task

_CURRENT: ContextVar[RunningTask] = ContextVar("hexq_current_task")
_EVENTS = threading.Lock()  # guards the lazy creation of a RunningTask's event


class RunningTask:
    """The Task a handler runs (its fields read through: .id, .attempts, .payload, ...) and whether its
    cancellation was asked for. Async handlers are cancelled outright; sync ones run in a thread that
    cannot be stopped, so they look at `cancelled` (or wait on it) and return early."""

    __slots__ = ("task", "_cancelled", "_event")

    def __init__(self, task: Task) -> None:
        self.task = task
        self._cancelled = False
        # Made only when someone waits or cancels: a worker makes one RunningTask per task it runs, and
        # a threading.Event (a Condition and a lock) would cost more than the rest of it.
        self._event: threading.Event | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.task, name)

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def wait_cancelled(self, timeout: float | None = None) -> bool:
        """Block (a sync handler's sleep) until the task is cancelled or `timeout` passes; True if cancelled."""
        return self._waiter().wait(timeout)

    def cancel(self) -> None:
        """The worker calls this when the backend says the task was cancelled."""
        self._cancelled = True
        self._waiter().set()

    def _waiter(self) -> threading.Event:
        with _EVENTS:
            if self._event is None:
                self._event = threading.Event()
                if self._cancelled:
                    self._event.set()
            return self._event


def current_task() -> RunningTask:
    """The running task; raises LookupError when called outside a handler."""
    return _CURRENT.get()


def bind(running: RunningTask) -> None:
    """Called by the worker in the asyncio task that runs the handler (each has its own context)."""
    _CURRENT.set(running)

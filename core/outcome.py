"""What becomes of a task after an attempt: the one place that applies the retry policy.

No function here reads a clock. A retry carries its backoff as `delay`, and the backend that stores
the outcome stamps run_at and finished_at from its own clock (hexq.core.clock.stamped), so a worker whose
clock is off cannot schedule a retry early or late, or date a result wrongly.
"""

from __future__ import annotations

import random
import traceback as _traceback
from collections.abc import Callable

from hexq.core.model import JSON, Task, TaskStatus
from hexq.core.retry import RetryPolicy

MAX_TRACEBACK = 8192  # characters of a failed attempt's traceback kept with the task


def succeeded(task: Task, result: JSON) -> Task:
    return task.moved_to(TaskStatus.SUCCEEDED, result=result, error=None, traceback=None)


def failed(task: Task, error: str, policy: RetryPolicy, *, traceback: str | None = None, retryable: bool = True,
           rand: Callable[[], float] = random.random) -> Task:
    """Schedule a retry with backoff, or dead-letter once attempts are used up (or it can't succeed)."""
    return _retry_or_dead(task, error, policy.delay(task.attempts, rand), retryable=retryable, traceback=traceback)


def traceback_of(exc: BaseException) -> str:
    """The exception's traceback as text, its last MAX_TRACEBACK characters (where the error was raised)."""
    text = "".join(_traceback.format_exception(exc))
    return text if len(text) <= MAX_TRACEBACK else "...\n" + text[-MAX_TRACEBACK:]


def lost(task: Task) -> Task:
    """A lease expired: the worker died or hung. The attempt counts (so a task that kills its worker
    cannot loop forever), but the retry is due at once: the lease expiry was the wait already."""
    return _retry_or_dead(task, "lease expired: worker lost or hung", 0.0)


def _retry_or_dead(task: Task, error: str, delay: float, *, retryable: bool = True,
                   traceback: str | None = None) -> Task:
    attempt = task.moved_to(TaskStatus.FAILED, error=error, traceback=traceback)
    if not retryable or task.attempts >= task.max_attempts:
        return attempt.moved_to(TaskStatus.DEAD)
    return attempt.moved_to(TaskStatus.SCHEDULED, delay=delay, worker_id=None)


def cancelled(task: Task) -> Task:
    """Someone cancelled the task while it ran (TaskStore.request_cancel): it ends here, not retried."""
    return task.moved_to(TaskStatus.CANCELLED, error="cancelled while running", traceback=None)


def released(task: Task) -> Task:
    """Give a task back unfinished (shutdown, budget spent). The attempt still counts, so a task that
    is always interrupted cannot loop forever: past max_attempts it is dead-lettered."""
    if task.attempts >= task.max_attempts:
        return failed(task, "interrupted by worker shutdown", RetryPolicy(), retryable=False)
    return task.moved_to(TaskStatus.QUEUED, delay=0.0, worker_id=None)

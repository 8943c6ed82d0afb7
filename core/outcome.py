"""What becomes of a task after an attempt: the one place that applies the retry policy."""

from __future__ import annotations

import random
from collections.abc import Callable

from core.model import JSON, Task, TaskStatus
from core.retry import RetryPolicy


def succeeded(task: Task, result: JSON, now: float) -> Task:
    return task.moved_to(TaskStatus.SUCCEEDED, result=result, error=None, finished_at=now)


def failed(task: Task, error: str, now: float, policy: RetryPolicy, *, retryable: bool = True,
           rand: Callable[[], float] = random.random) -> Task:
    """Schedule a retry with backoff, or dead-letter once attempts are used up (or it can't succeed)."""
    return _retry_or_dead(task, error, now, policy.delay(task.attempts, rand), retryable=retryable)


def lost(task: Task, now: float) -> Task:
    """A lease expired: the worker died or hung. The attempt counts (so a task that kills its worker
    cannot loop forever), but the retry is due at once: the lease expiry was the wait already."""
    return _retry_or_dead(task, "lease expired: worker lost or hung", now, 0.0)


def _retry_or_dead(task: Task, error: str, now: float, delay: float, *, retryable: bool = True) -> Task:
    attempt = task.moved_to(TaskStatus.FAILED, error=error)
    if not retryable or task.attempts >= task.max_attempts:
        return attempt.moved_to(TaskStatus.DEAD, finished_at=now)
    return attempt.moved_to(TaskStatus.SCHEDULED, run_at=now + delay, worker_id=None)


def released(task: Task, now: float) -> Task:
    """Give a task back unfinished (shutdown, budget spent). The attempt still counts, so a task that
    is always interrupted cannot loop forever: past max_attempts it is dead-lettered."""
    if task.attempts >= task.max_attempts:
        return failed(task, "interrupted by worker shutdown", now, RetryPolicy(), retryable=False)
    return task.moved_to(TaskStatus.QUEUED, run_at=now, worker_id=None)

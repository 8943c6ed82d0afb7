"""What becomes of a task after an attempt: the one place that applies the retry policy.

Every attempt that does not succeed leaves an Attempt in the task's history (the last HISTORY_LIMIT of
them), with its error, the tail of its traceback and the backoff chosen; `ended` then adds what only the
caller knows, the lease's token and how long the attempt ran. A successful attempt adds nothing: the task's
own fields describe it, and the success path stays as cheap as it was.

No function here reads a clock. A retry carries its backoff as `delay`, and the backend that stores
the outcome stamps run_at and finished_at from its own clock (hexq.core.clock.stamped), so a worker whose
clock is off cannot schedule a retry early or late, or date a result wrongly.
"""

from __future__ import annotations

import random
import traceback as _traceback
from collections.abc import Callable

from hexq.core.model import HISTORY_LIMIT, JSON, Attempt, AttemptOutcome, Task, TaskStatus, replaced
from hexq.core.retry import Retry, RetryPolicy

MAX_TRACEBACK = 8192  # characters of a failed attempt's traceback kept with the task
MAX_ATTEMPT_TRACEBACK = 2048  # ... and kept with each attempt of its history (the last ones: where it was raised)
MAX_ATTEMPT_ERROR = 1000  # characters of an error kept with each attempt


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
    return _retry_or_dead(task, "lease expired: worker lost or hung", 0.0, lost=True)


def _retry_or_dead(task: Task, error: str, delay: float, *, retryable: bool = True,
                   traceback: str | None = None, lost: bool = False) -> Task:
    attempt = task.moved_to(TaskStatus.FAILED, error=error, traceback=traceback)
    if not retryable or task.attempts >= task.max_attempts:
        how = AttemptOutcome.LOST if lost else AttemptOutcome.DEAD
        return attempt.moved_to(TaskStatus.DEAD, history=_recorded(task, how, error, traceback))
    how = AttemptOutcome.LOST if lost else AttemptOutcome.RETRIED
    return attempt.moved_to(TaskStatus.SCHEDULED, delay=delay, worker_id=None,
                            history=_recorded(task, how, error, traceback, delay))


def held(task: Task, delay: float) -> Task:
    """The task's circuit breaker is open: give it back unrun for `delay` seconds (until a probe may go). The
    claim's attempt is given back too, and nothing is added to its history: it never ran."""
    return _given_back(task, delay, task.history)


def deferred(task: Task, retry: Retry, policy: RetryPolicy, max_deferrals: int, *,
             rand: Callable[[], float] = random.random) -> Task:
    """The handler raised Retry(after=...): run it again then, the attempt given back, unless the task has been
    deferred `max_deferrals` times already (its history counts them): then it is a failed attempt like any."""
    count = sum(1 for attempt in task.history if attempt.outcome is AttemptOutcome.DEFERRED)
    reason = f"Retry: {retry}"
    if count >= max_deferrals:
        return failed(task, f"{reason} (deferred {count} times already: counted as a failure)", policy, rand=rand)
    return _given_back(task, retry.after, _recorded(task, AttemptOutcome.DEFERRED, reason, delay=retry.after))


def given_back(before: Task, after: Task) -> bool:
    """Whether `after`, the outcome of the claimed `before`, gave its attempt back (held or deferred)."""
    return after.attempts < before.attempts


def _given_back(task: Task, delay: float, history: tuple[Attempt, ...]) -> Task:
    # RUNNING -> FAILED -> SCHEDULED, as a retry; the claim's attempt is taken back, so it is not used.
    return task.moved_to(TaskStatus.FAILED).moved_to(TaskStatus.SCHEDULED, delay=delay, worker_id=None,
                                                     attempts=max(task.attempts - 1, 0), history=history)


def cancelled(task: Task) -> Task:
    """Someone cancelled the task while it ran (TaskStore.request_cancel): it ends here, not retried."""
    error = "cancelled while running"
    return task.moved_to(TaskStatus.CANCELLED, error=error, traceback=None,
                         history=_recorded(task, AttemptOutcome.CANCELLED, error))


def released(task: Task) -> Task:
    """Give a task back unfinished (shutdown, budget spent). The attempt still counts, so a task that
    is always interrupted cannot loop forever: past max_attempts it is dead-lettered."""
    if task.attempts >= task.max_attempts:
        return failed(task, "interrupted by worker shutdown", RetryPolicy(), retryable=False)
    return task.moved_to(TaskStatus.QUEUED, delay=0.0, worker_id=None,
                         history=_recorded(task, AttemptOutcome.RELEASED, "released unfinished by its worker"))


def ended(before: Task, task: Task, token: int | None, *, seconds: float | None = None,
          at: float | None = None) -> Task:
    """`task`, this module's outcome for the running task `before`, with the attempt it recorded closed: the
    lease's `token`, and its end, `seconds` after its start (the duration the worker measured) or `at` (a
    backend time, such as the lease's expiry). Unchanged if the outcome recorded none (a success)."""
    if task.history is before.history:
        return task
    last = task.history[-1]
    if at is None and seconds is not None and last.started_at is not None:
        at = last.started_at + max(seconds, 0.0)
    closed = Attempt(last.number, last.outcome, last.worker_id, token, last.started_at, at, last.error,
                     last.traceback, last.delay)
    return replaced(task, history=(*task.history[:-1], closed))


def _recorded(task: Task, how: AttemptOutcome, error: str | None, traceback: str | None = None,
              delay: float | None = None) -> tuple[Attempt, ...]:
    """`task`'s history with its running attempt appended as ended `how`, the oldest dropped past HISTORY_LIMIT."""
    if error is not None and len(error) > MAX_ATTEMPT_ERROR:
        error = error[:MAX_ATTEMPT_ERROR] + "..."
    if traceback is not None and len(traceback) > MAX_ATTEMPT_TRACEBACK:
        traceback = "...\n" + traceback[-MAX_ATTEMPT_TRACEBACK:]
    attempt = Attempt(task.attempts, how, task.worker_id, None, task.started_at, None, error, traceback, delay)
    return (*task.history[-(HISTORY_LIMIT - 1):], attempt)

"""What a client raises beyond hexq.core.errors: a task that ended without a result, a wait that ran out,
and an HTTP answer that no domain error describes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hexq.core.errors import QueueError
from hexq.core.model import Task


class RemoteTraceback(Exception):
    """The traceback a worker recorded, shown as the cause of TaskFailed (as multiprocessing shows a pool's)."""

    def __init__(self, traceback: str) -> None:
        super().__init__(traceback)
        self.traceback = traceback

    def __str__(self) -> str:
        return f'\n"""\n{self.traceback.rstrip()}\n"""'


class TaskFailed(QueueError):
    """The task is dead: its last attempt failed and it has no attempts left (see the dead letters to replay it).

    Attributes: task (as it ended), task_id, error (the handler's exception as text) and traceback (the
    worker's, or None where the backend does not keep one). The traceback is also this exception's cause,
    so an unhandled TaskFailed prints it.
    """

    def __init__(self, task: Task) -> None:
        self.task = task
        self.task_id = task.id
        self.error: str | None = task.error
        # A Task gains `traceback` in core/model.py; read it so that older builds of the model work too.
        self.traceback: str | None = getattr(task, "traceback", None)
        super().__init__(self._describe())
        if self.traceback:
            self.__cause__ = RemoteTraceback(self.traceback)

    def _describe(self) -> str:
        return (f"task {self.task_id} ({self.task.type}) is dead after {self.task.attempts} attempt(s): "
                f"{self.error or 'no error recorded'}")


class TaskCancelled(TaskFailed):
    """The task was cancelled. `error` and `traceback` are an earlier failed attempt's, if it was cancelled
    while waiting for a retry; otherwise None. A TaskFailed, so one `except` catches every task that ended
    without a result."""

    def _describe(self) -> str:
        earlier = f"; its last attempt had failed: {self.error}" if self.error else ""
        return f"task {self.task_id} ({self.task.type}) was cancelled{earlier}"


class WaitTimeout(QueueError, TimeoutError):
    """The task had not finished when the wait ran out; `task` is as it was last seen (it may still finish)."""

    def __init__(self, task: Task, timeout: float) -> None:
        super().__init__(f"task {task.id} ({task.type}) is still {task.status.value} after {timeout:g}s")
        self.task = task
        self.task_id = task.id
        self.timeout = timeout


class ApiError(QueueError):
    """An HTTP answer of the hexq API that no domain error stands for: 400 bad JSON, 401 unauthorized,
    403 forbidden (details.scope), 413 too large, 429 rate_limited, a 5xx. `status`, `code` (the body's
    `error`), `details`, and `retry_after` (seconds, from Retry-After) when the server sent one."""

    def __init__(self, status: int, code: str, message: str, details: Mapping[str, Any] | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status = status
        self.code = code
        self.details = dict(details or {})
        self.retry_after = retry_after

"""Waiting for a task to finish: block where the backend can, poll with backoff where it cannot."""

from __future__ import annotations

import asyncio
import time

from hexq.core.model import Task
from hexq.core.ports import FinishWaiter, TaskStore

FIRST_POLL = 0.005  # seconds: a fast task is seen at once ...
MAX_POLL = 0.25  # ... and a long wait costs at most four reads a second


async def wait_finished(store: TaskStore, task_id: str, seconds: float) -> Task | None:
    """The task once it is finished, or as it is after `seconds`; None if there is no such task."""
    if isinstance(store, FinishWaiter):
        return await store.wait_finished(task_id, seconds)
    deadline = time.monotonic() + max(seconds, 0.0)
    pause = FIRST_POLL
    while True:
        task = await store.get(task_id)
        left = deadline - time.monotonic()
        if task is None or task.is_terminal or left <= 0:
            return task
        await asyncio.sleep(min(pause, left))
        pause = min(pause * 2, MAX_POLL)

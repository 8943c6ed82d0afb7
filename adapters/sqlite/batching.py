"""Concurrent enqueues of one process, stored together: the calls made in one turn of an event loop go to
SQLite as one transaction (one write lock, one commit) instead of one each.

Each call still gets its own answer: its tasks as stored, or its own error (QueueFull for its tenant, an
IdempotencyMismatch), which undoes only its own writes (broker.enqueue). A failure of the file itself
(BackendUnavailable) is every call's in the batch. A call that comes alone waits one loop turn for company.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hexq.adapters.sqlite.broker import Outcome, Request
from hexq.core.model import Task

Store = Callable[[list[Request]], "asyncio.Future[list[Outcome]]"]

MAX_TASKS = 1000  # per transaction: more would hold the write lock longer than other processes should wait


@dataclass(slots=True)
class _Call:
    tasks: Sequence[Task]
    cap: int
    answer: asyncio.Future[list[Task]]


class EnqueueBatcher:
    """`store(requests)` stores one batch and returns a future of each request's outcome, in order."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._pending: dict[asyncio.AbstractEventLoop, list[_Call]] = {}

    def enqueue(self, tasks: Sequence[Task], cap: int) -> asyncio.Future[list[Task]]:
        loop = asyncio.get_running_loop()
        calls = self._pending.get(loop)
        if calls is None:
            calls = self._pending[loop] = []
            loop.call_soon(self._flush, loop)  # after every call this turn makes
        answer: asyncio.Future[list[Task]] = loop.create_future()
        calls.append(_Call(tasks, cap, answer))
        return answer

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        for batch in _batches(self._pending.pop(loop)):
            try:
                stored = self._store([(call.tasks, call.cap) for call in batch])
            except Exception as exc:
                _answer(batch, exc)
                continue
            if stored.done():
                _hand_out(batch, stored)
            else:
                stored.add_done_callback(functools.partial(_hand_out, batch))


def _batches(calls: list[_Call]) -> list[list[_Call]]:
    """Calls in order, split where a batch would pass MAX_TASKS (a bigger call is a batch of its own)."""
    batches: list[list[_Call]] = []
    size = MAX_TASKS
    for call in calls:
        if size + len(call.tasks) > MAX_TASKS:
            batches.append([])
            size = 0
        batches[-1].append(call)
        size += len(call.tasks)
    return batches


def _hand_out(batch: list[_Call], stored: asyncio.Future[list[Outcome]]) -> None:
    exc = stored.exception()
    if exc is not None:
        _answer(batch, exc)
        return
    for call, outcome in zip(batch, stored.result(), strict=True):
        if call.answer.done():
            continue  # its caller was cancelled; what it asked for is stored all the same
        if isinstance(outcome, Exception):
            call.answer.set_exception(outcome)
        else:
            call.answer.set_result(outcome)


def _answer(batch: list[_Call], exc: BaseException) -> None:
    for call in batch:
        if not call.answer.done():
            call.answer.set_exception(exc)


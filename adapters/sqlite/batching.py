"""Concurrent enqueues of one process, stored together: the calls made in one turn of an event loop go to
SQLite as one transaction (one write lock, one commit) instead of one each.

The first call of a turn leads: it yields once, so that the coroutines ready in the same turn can join, then
stores the batch and hands out the answers. Each call still gets its own answer: its tasks as stored, or
its own error (QueueFull for its tenant, an IdempotencyMismatch), which undoes only its own writes
(broker.enqueue). A failure of the file itself (BackendUnavailable) is every call's in the batch. A call
that comes alone pays one yield.
"""

from __future__ import annotations

import asyncio
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
    answer: asyncio.Future[list[Task]] | None  # None for the leader, which takes its own answer


class EnqueueBatcher:
    """`store(requests)` stores one batch and returns a future of each request's outcome, in order."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._gathering: dict[asyncio.AbstractEventLoop, list[_Call]] = {}

    async def enqueue(self, tasks: Sequence[Task], cap: int) -> list[Task]:
        loop = asyncio.get_running_loop()
        calls = self._gathering.get(loop)
        if calls is not None:  # a leader is gathering this turn's calls: go with it
            answer: asyncio.Future[list[Task]] = loop.create_future()
            calls.append(_Call(tasks, cap, answer))
            return await answer
        calls = self._gathering[loop] = [_Call(tasks, cap, None)]
        try:
            await asyncio.sleep(0)  # one turn: whoever calls in it joins
        except BaseException:  # cancelled: the others are stored all the same, without this call
            del self._gathering[loop]
            loop.call_soon(self._store_all, calls[1:])
            raise
        del self._gathering[loop]
        batches = _batches(calls)
        for batch in batches[1:]:
            self._store_all(batch)
        return await self._lead(batches[0])

    async def _lead(self, batch: list[_Call]) -> list[Task]:
        """Store the batch that holds the leader's own call (the first); its outcome is the return value."""
        stored = self._store([(call.tasks, call.cap) for call in batch])
        try:
            # shield: a cancelled leader must not cancel the others' store (it goes on, as in a thread)
            outcomes = stored.result() if stored.done() else await asyncio.shield(stored)
        except BaseException as exc:
            _fail(batch[1:], exc)
            raise
        _hand_out(batch[1:], outcomes[1:])
        if isinstance(outcomes[0], Exception):
            raise outcomes[0]
        return outcomes[0]

    def _store_all(self, batch: list[_Call]) -> None:
        if not batch:
            return
        self._store([(call.tasks, call.cap) for call in batch]).add_done_callback(lambda done: _done(batch, done))


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


def _done(calls: list[_Call], stored: asyncio.Future[list[Outcome]]) -> None:
    if stored.cancelled():  # only at the loop's shutdown
        for call in calls:
            if call.answer is not None:
                call.answer.cancel()
    elif (exc := stored.exception()) is not None:
        _fail(calls, exc)
    else:
        _hand_out(calls, stored.result())


def _hand_out(calls: list[_Call], outcomes: list[Outcome]) -> None:
    for call, outcome in zip(calls, outcomes, strict=True):
        if call.answer is None or call.answer.done():
            continue  # its caller was cancelled; what it asked for is stored all the same
        if isinstance(outcome, Exception):
            call.answer.set_exception(outcome)
        else:
            call.answer.set_result(outcome)


def _fail(calls: list[_Call], exc: BaseException) -> None:
    for call in calls:
        if call.answer is not None and not call.answer.done():
            call.answer.set_exception(exc)

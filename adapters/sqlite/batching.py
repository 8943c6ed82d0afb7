"""Concurrent enqueues of one process, stored together: the calls made in one turn of an event loop go to
SQLite as one transaction (one write lock, one commit) instead of one each.

The first call of a turn leads: it yields once, so that the coroutines ready in the same turn can join,
then stores the batch (payloads encoded first, once: broker.Request) and hands out the answers. Each call
still gets its own answer: its tasks as stored, or its own error (QueueFull for its tenant, an
IdempotencyMismatch), which undoes only its own writes (broker.enqueue). A failure of the file itself
(BackendUnavailable) is every call's in the batch. A call that comes alone pays one yield.
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
        self._gathering: dict[asyncio.AbstractEventLoop, list[_Call]] = {}

    async def enqueue(self, tasks: Sequence[Task], cap: int) -> list[Task]:
        loop = asyncio.get_running_loop()
        mine = _Call(tasks, cap, loop.create_future())
        calls = self._gathering.get(loop)
        if calls is not None:  # a leader is gathering this turn's calls: go with it
            calls.append(mine)
            return await mine.answer
        calls = self._gathering[loop] = [mine]
        try:
            await asyncio.sleep(0)  # one turn: whoever calls in it joins
        except BaseException:  # cancelled: the others are stored all the same, without this call
            del self._gathering[loop]
            loop.call_soon(self._store_all, calls[1:])
            raise
        del self._gathering[loop]
        for batch in _batches(calls):
            self._store_all(batch)
        return await mine.answer  # done already when the batch was stored at the first try

    def _store_all(self, calls: list[_Call]) -> None:
        requests: list[Request] = []
        batch: list[_Call] = []
        for call in calls:
            try:
                requests.append(Request.of(call.tasks, call.cap))  # a payload JSON cannot encode fails its call
            except Exception as exc:
                _fail([call], exc)
                continue
            batch.append(call)
        if not batch:
            return
        stored = self._store(requests)
        if stored.done():
            _done(batch, stored)
        else:
            stored.add_done_callback(functools.partial(_done, batch))


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
            call.answer.cancel()
    elif (exc := stored.exception()) is not None:
        _fail(calls, exc)
    else:
        _hand_out(calls, stored.result())


def _hand_out(calls: list[_Call], outcomes: list[Outcome]) -> None:
    for call, outcome in zip(calls, outcomes, strict=True):
        if call.answer.done():
            continue  # its caller was cancelled; what it asked for is stored all the same
        if isinstance(outcome, Exception):
            call.answer.set_exception(outcome)
        else:
            call.answer.set_result(outcome)


def _fail(calls: list[_Call], exc: BaseException) -> None:
    for call in calls:
        if not call.answer.done():
            call.answer.set_exception(exc)

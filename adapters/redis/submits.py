"""The submit coalescer: concurrent enqueues of one process share one script call.

Every enqueue made during one turn of the event loop (64 coroutines submitting one by one, or an API
under load) goes out in one call of enqueue.lua at the end of that turn, up to MAX_TASKS tasks a call.
The script answers each request on its own: a request is all or nothing, and a refused one (a tenant
over its cap, an idempotency mismatch) fails only its caller. A lone submit waits for nothing: its
call leaves at the end of the turn it was made in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hexq.adapters.redis import records
from hexq.adapters.redis.connection import translated
from hexq.core import idempotency
from hexq.core.clock import stamped
from hexq.core.errors import QueueFull
from hexq.core.fairness import step_of
from hexq.core.model import Task

MAX_TASKS = 1000  # tasks one call carries (a bulk submit larger than this still goes as one request)

Send = Callable[[list[records.Arg]], Awaitable[Any]]


@dataclass(slots=True)
class _Request:
    tasks: Sequence[Task]
    cap: int
    args: list[records.Arg]
    answer: asyncio.Future[tuple[float, Any]]


@dataclass(slots=True)
class Submits:
    """Parameters: send, which runs enqueue.lua with the given ARGV (after the clock mode) and returns
    its answer; weights, the fair-queue weights of the tenants this process submits for."""

    send: Send
    weights: Mapping[str, int] = field(default_factory=dict)  # fair-queue weights (hexq.core.fairness)
    _pending: list[_Request] = field(default_factory=list)
    _size: int = 0
    _scheduled: asyncio.AbstractEventLoop | None = None  # the loop whose turn ends with a flush
    _calls: set[asyncio.Task[None]] = field(default_factory=set)

    async def enqueue(self, tasks: Sequence[Task], cap: int) -> list[Task]:
        # Built here, so a task that cannot be stored fails its own caller before it joins a call.
        weights = self.weights
        args = [arg for task in tasks for arg in records.enqueue_args(task, step_of(weights, task.tenant))]
        loop = asyncio.get_running_loop()
        request = _Request(tasks, cap, args, loop.create_future())
        if self._pending and self._size + len(tasks) > MAX_TASKS:
            self._flush()
        self._pending.append(request)
        self._size += len(tasks)
        if self._scheduled is not loop:
            self._scheduled = loop
            loop.call_soon(self._turn_ended)
        with translated():  # each caller raises its own BackendUnavailable, from the call's driver error
            now, answer = await request.answer
        return _stored(tasks, cap, now, answer)

    def _turn_ended(self) -> None:
        self._scheduled = None
        self._flush()

    def _flush(self) -> None:
        loop = asyncio.get_running_loop()  # requests left by a loop that has gone cannot be answered
        batch = [request for request in self._pending
                 if not request.answer.done() and request.answer.get_loop() is loop]  # cancelled callers drop out
        self._pending, self._size = [], 0
        if batch:
            call = asyncio.ensure_future(self._call(batch))
            self._calls.add(call)  # held until done: the loop keeps only weak references to tasks
            call.add_done_callback(self._calls.discard)

    async def _call(self, batch: list[_Request]) -> None:
        args: list[records.Arg] = [len(batch)]
        for request in batch:
            args += [f"{int(request.cap)} {len(request.tasks)}", *request.args]
        try:
            now, answers = await self.send(args)
        except asyncio.CancelledError:
            for request in batch:
                request.answer.cancel()
            raise
        except Exception as exc:  # the whole call failed (Redis down, say): so did every request in it
            for request in batch:
                if not request.answer.done():
                    request.answer.set_exception(exc)
            return
        for request, answer in zip(batch, answers, strict=True):
            if not request.answer.done():
                request.answer.set_result((float(now), answer))


def _stored(tasks: Sequence[Task], cap: int, now: float, answer: Any) -> list[Task]:
    """One request's answer (see enqueue.lua) as the stored tasks, or its refusal as an error."""
    outcome, detail = answer
    if outcome == "full":
        raise QueueFull(detail, cap)
    if outcome == "mismatch":
        raise idempotency.mismatch(records.loads(detail)[1])
    return [stamped(task, now, new=True) if found == 0 else records.decode_task(found)
            for task, found in zip(tasks, detail, strict=True)]

"""How `hexq serve` meets a submitted task at once: the wake channel between its API and its workers.

The poller still starts every worker invocation, and the process pool keeps `HEXQ_WARM` of them waiting
on the backend; what this module adds is the news that work arrived:

- NotifyingBackend wraps the serve process's backend: after a write that may make a task claimable
  (a submit, a replay, a promotion) it calls back, and `hexq serve` wakes its poller (in-process, so a
  burst starts more invocations between ticks) and, on SQLite, rings the pool's processes.
- SQLite cannot tell another process that a row arrived, so each pool process gets a pipe from the
  serve process (`ring` writes a byte). WokenBroker, the broker a pool process claims through, waits on
  that pipe rather than polling every 5-50 ms. Redis needs none of it: a waiting claim blocks on the
  server. Separate `hexq worker` processes keep the adapter's short poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
from collections.abc import Awaitable, Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any

from hexq.core.model import Lease, Settlement, Task
from hexq.core.ports import Backend, Broker

# Writes after which a task may be claimable: new tasks (also fired schedules), promoted or reclaimed ones,
# replays (transition dead -> queued), and settlements that hand a task back to the queue.
_WRITES = frozenset({"enqueue", "promote_due", "transition", "settle"})
# A waiting claim on SQLite still looks now and then, for writes the serve process does not make (a handler
# submitting a follow-up task, a `hexq submit` on the same file): 5 ms after it last found work, doubling to
# FALLBACK while it finds none. The poller's tick also rings the pool whenever tasks are queued.
FIRST_LOOK = 0.005
FALLBACK = 1.0


class NotifyingBackend:
    """The backend, calling `on_write()` after each write that changed something (see _WRITES).

    Everything else is the inner backend's own attribute, so optional ports (isinstance checks against
    such as FinishWaiter) see exactly what the inner backend has.
    """

    def __init__(self, inner: Backend, on_write: Callable[[], None]) -> None:
        self._inner = inner
        self._on_write = on_write

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._inner, name)
        return functools.partial(self._notifying, value) if name in _WRITES else value

    async def _notifying(self, write: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        result = await write(*args, **kwargs)
        if result:  # 0 promoted, [] stored, None (a failed compare-and-set): nothing new to claim
            self._on_write()
        return result


def ring(bell: Connection) -> None:
    """One byte down a pool process's wake pipe, never blocking: a full pipe already holds unread wakes."""
    with contextlib.suppress(OSError):  # full (BlockingIOError), or closed with its slot
        os.write(bell.fileno(), b"\0")


class WokenBroker:
    """A Broker whose claim, finding nothing, waits for the serve process's ring before it looks again,
    instead of the adapter's 5-50 ms poll: while idle it looks about once a FALLBACK. Only for a pool
    process of `hexq serve` on a backend that cannot notify (SQLite)."""

    def __init__(self, inner: Broker, bell: Connection) -> None:
        self._inner = inner
        self._fd = bell.fileno()
        self._bell = bell  # kept open with this broker
        self._open = True  # False once the serve process is gone (EOF): then the adapter polls as usual
        self._pause = FIRST_LOOK  # kept across claims (and invocations): it grows only while nothing comes
        os.set_blocking(self._fd, False)

    async def enqueue(self, tasks: Sequence[Task], *, cap: int = 0) -> list[Task]:
        return await self._inner.enqueue(tasks, cap=cap)

    async def extend(self, leases: Sequence[Lease], lease_seconds: float) -> list[Lease | None]:
        return await self._inner.extend(leases, lease_seconds)

    async def settle(self, settlements: Sequence[Settlement]) -> list[bool]:
        return await self._inner.settle(settlements)

    async def claim(self, queues: Sequence[str], n: int, *, lease_seconds: float, worker_id: str,
                    wait: float = 0.0) -> list[Lease]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            self._drain()  # before the claim: a ring that comes during it makes the wait below return at once
            remaining = deadline - loop.time()
            if not self._open:
                return await self._inner.claim(queues, n, lease_seconds=lease_seconds, worker_id=worker_id,
                                               wait=max(remaining, 0.0))
            leases = await self._inner.claim(queues, n, lease_seconds=lease_seconds, worker_id=worker_id)
            if leases:
                self._pause = FIRST_LOOK
                return leases
            remaining = deadline - loop.time()
            if remaining <= 0:
                return leases
            await self._rung(loop, min(remaining, self._pause))
            self._pause = min(self._pause * 2, FALLBACK)

    def _drain(self) -> None:
        while self._open:
            try:
                if not os.read(self._fd, 4096):
                    self._open = False  # EOF: the serve process closed its end or died
            except BlockingIOError:
                return

    async def _rung(self, loop: asyncio.AbstractEventLoop, seconds: float) -> None:
        rung: asyncio.Future[None] = loop.create_future()
        loop.add_reader(self._fd, _resolve, rung)
        try:
            await asyncio.wait([rung], timeout=seconds)
        finally:
            loop.remove_reader(self._fd)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)

"""Batched settlement: results that finish while one settle round trip is in flight go in the next.

Under load this turns N acks into a handful of round trips without adding a timer: a lone
result is flushed at once, a burst shares one call. What one call does is the caller's `send`
(the worker settles, and claims in the same round trip where the backend can: SettleAndClaim).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from hexq.core.errors import BackendUnavailable
from hexq.core.model import Settlement
from hexq.core.ports import Clock

log = logging.getLogger("hexq.acks")

Send = Callable[[list[Settlement]], Awaitable[list[bool]]]
"""One round trip that settles a batch: applied (True) or stale (False) per settlement."""
Done = Callable[[Settlement, bool | None], None]
"""Called once per settlement: True applied, False stale (the lease moved on), None gave up."""

_RETRY_DELAYS = (0.05, 0.2, 1.0, 2.0, 5.0)


class AckBuffer:
    def __init__(self, send: Send, done: Done, clock: Clock, *, max_batch: int = 500) -> None:
        self._send = send
        self._done = done
        self._clock = clock
        self._max_batch = max_batch
        self._pending: list[Settlement] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def put(self, settlement: Settlement) -> None:
        self._pending.append(settlement)
        self._wake.set()

    async def close(self) -> None:
        """Flush everything put so far, then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch:]
                results = await self._settle(batch)
                for settlement, applied in zip(batch, results, strict=True):
                    self._done(settlement, applied)
            if self._closing:
                return

    async def _settle(self, batch: list[Settlement]) -> list[bool] | list[None]:
        for delay in _RETRY_DELAYS:
            try:
                return await self._send(batch)
            except BackendUnavailable as exc:
                log.warning("settling %d tasks failed, retrying in %.2fs: %s", len(batch), delay, exc)
                await self._clock.sleep(delay)
        log.error("%d tasks could not be settled; their leases will expire and they will run again", len(batch))
        return [None] * len(batch)

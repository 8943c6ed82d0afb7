"""Per-task timeouts on the worker's clock: one sleeper watches every running task's deadline.

A timer per task (asyncio.timeout) costs more than the rest of a no-op task's bookkeeping. Here a
task's deadline is one heap push; one coroutine sleeps (on the Clock port, so a FakeClock drives it
in tests) until the nearest deadline and expires whatever is still running then. A task that ends
before its deadline is only marked; its heap entry is dropped when it reaches the top, or when
entries of ended tasks outnumber the live ones (so the heap stays within twice the running tasks).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from typing import Protocol

from hexq.core.ports import Clock


class Timed(Protocol):
    timing: bool  # True from Deadlines.add until Deadlines.done: its deadline still matters

    def expire(self) -> None:
        """Its deadline passed while it was timing."""
        ...


class Deadlines:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._heap: list[tuple[float, int, Timed]] = []
        self._order = itertools.count()
        self._live = 0
        self._nearer: asyncio.Future[None] | None = None  # resolved when a deadline nearer than the watched one comes

    def add(self, item: Timed, seconds: float) -> None:
        """Expire `item` `seconds` from now unless done(item) comes first."""
        heap = self._heap
        if len(heap) > 2 * self._live + 64:
            heap[:] = [entry for entry in heap if entry[2].timing]
            heapq.heapify(heap)
        at = self._clock.monotonic() + seconds
        nearest = not heap or at < heap[0][0]
        heapq.heappush(heap, (at, next(self._order), item))
        item.timing = True
        self._live += 1
        if nearest and self._nearer is not None and not self._nearer.done():
            self._nearer.set_result(None)

    def done(self, item: Timed) -> None:
        if item.timing:
            item.timing = False
            self._live -= 1

    async def run(self) -> None:
        """Expire items as their deadlines pass, until cancelled."""
        heap = self._heap
        while True:
            while heap and not heap[0][2].timing:
                heapq.heappop(heap)
            if not heap:
                await self._until_nearer(None)
                continue
            wait = heap[0][0] - self._clock.monotonic()
            if wait > 0:
                await self._until_nearer(wait)
                continue
            item = heapq.heappop(heap)[2]
            self.done(item)
            item.expire()

    async def _until_nearer(self, seconds: float | None) -> None:
        """Until `seconds` pass on the clock (None: for ever) or a nearer deadline is added."""
        nearer = self._nearer = asyncio.get_running_loop().create_future()
        if seconds is None:
            await nearer
            return
        sleeper = asyncio.ensure_future(self._clock.sleep(seconds))
        try:
            await asyncio.wait((sleeper, nearer), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            nearer.cancel()

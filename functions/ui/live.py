"""Live figures for the dashboard: one coalesced snapshot a second per process, whatever the number of viewers.

Every viewer of `GET /v1/events` asks the `Broadcaster` for the latest snapshot once a second; the first to
ask after the snapshot has aged past `interval` reads the backend (stats and workers) while the others wait
on the same lock and then take what it read. There is no background task to start or stop, so the same code
serves `hexq serve` and a Lambda invocation. Viewers never see per-task events, only these snapshots — a
table redrawn per task event is what jammed Flower (research/wave2.md §2.2).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson

Snapshot = dict[str, Any]
Read = Callable[[], Awaitable[Snapshot]]


class Broadcaster:
    """The latest snapshot, read from the backend at most once per `interval` seconds."""

    def __init__(self, read: Read, *, interval: float = 1.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._read = read
        self.interval = interval
        self._monotonic = monotonic
        self._lock: asyncio.Lock | None = None
        self._latest: Snapshot | None = None
        self._read_at = -float("inf")
        self.reads = 0  # backend reads so far; tests count them

    async def latest(self) -> Snapshot:
        if self._lock is None:  # made on first use, on the loop that serves
            self._lock = asyncio.Lock()
        async with self._lock:
            started = self._monotonic()
            # A tenth of slack: a viewer that slept `interval` since its last snapshot may wake a hair early,
            # and should still get a fresh one rather than the same one twice.
            if self._latest is None or started - self._read_at >= self.interval * 0.9:
                self._latest = await self._read()
                self._read_at = started
                self.reads += 1
            return self._latest

    async def stream(self, first: Snapshot, *, once: bool = False) -> AsyncIterator[bytes]:
        """Server-sent events: `first`, then a `snapshot` event a second (none more when `once`). A failed
        read becomes an `error` event and the stream goes on: the backend may come back."""
        yield event("snapshot", first)
        while not once:
            await asyncio.sleep(self.interval)
            try:
                yield event("snapshot", await self.latest())
            except Exception as exc:  # BackendUnavailable and friends: tell the viewer, keep the stream
                yield event("error", {"message": str(exc)[:200]})


def event(name: str, data: object) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

"""The worker registry's rules, and an in-process one (the memory backend's).

Every backend follows the same rules (the contract suite checks them): a beat stamps last_seen with the
backend's clock and keeps started_at while the worker is alive; a worker whose last beat is `ttl` or more
seconds old is gone, and a beat after that registers it again, started now.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from hexq.core.model import WorkerInfo
from hexq.core.ports import Clock


@dataclass(frozen=True, slots=True)
class Entry:
    worker: WorkerInfo
    expires: float  # the backend time by which the next beat must come


def beaten(previous: Entry | None, worker: WorkerInfo, ttl: float, now: float) -> Entry:
    """The entry a beat leaves: `worker` seen now, started when it registered (now, unless it is still alive)."""
    started = previous.worker.started_at if previous is not None and previous.expires > now else now
    return Entry(replace(worker, started_at=started, last_seen=now), now + ttl)


class Roster:
    """A WorkerRegistry in this process's memory (the caller locks)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._entries: dict[str, Entry] = {}

    def beat(self, worker: WorkerInfo, ttl: float) -> None:
        now = self._clock.now()
        self._entries[worker.id] = beaten(self._entries.get(worker.id), worker, ttl, now)
        for worker_id in [i for i, entry in self._entries.items() if entry.expires <= now]:
            del self._entries[worker_id]  # bounded by the workers there are

    def leave(self, worker_id: str) -> None:
        self._entries.pop(worker_id, None)

    def workers(self) -> list[WorkerInfo]:
        now = self._clock.now()
        return [entry.worker for _, entry in sorted(self._entries.items()) if entry.expires > now]

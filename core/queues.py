"""The queue service: list the queues, pause and resume them. What the API, the client and the CLI share."""

from __future__ import annotations

from dataclasses import dataclass

from hexq.core.model import Stats
from hexq.core.ports import QueueControl, TaskStore
from hexq.core.registry import check_name


@dataclass(frozen=True, slots=True)
class QueueInfo:
    """One queue as GET /v1/queues shows it: `depth` is its queued tasks (ready now, or once it is resumed)."""

    name: str
    paused: bool = False
    depth: int = 0
    running: int = 0
    scheduled: int = 0
    dead: int = 0


class QueueService:
    """Pause and resume queues (QueueControl), and list them from the store's stats: every queue that holds a
    queued, running, scheduled or dead task, or is paused. Raises ValidationError for a name that cannot be a
    queue's, BackendUnavailable from the backend."""

    def __init__(self, control: QueueControl, store: TaskStore) -> None:
        self._control = control
        self._store = store

    async def pause(self, queue: str) -> bool:
        """True if the queue was not paused before."""
        return await self._control.pause(check_name(queue, "queue"))

    async def resume(self, queue: str) -> bool:
        """True if the queue was paused."""
        return await self._control.resume(check_name(queue, "queue"))

    async def queues(self) -> list[QueueInfo]:
        return queue_infos(await self._store.stats())


def queue_infos(stats: Stats) -> list[QueueInfo]:
    """The queues `stats` knows of, by name."""
    counts: dict[str, dict[str, int]] = {name: {} for name in stats.paused}
    for (queue, _, state), n in stats.depth.items():
        per_state = counts.setdefault(queue, {})
        per_state[state] = per_state.get(state, 0) + n
    for queue, levels in stats.queued.items():  # a backend's depth may leave queued out: queued says it too
        counts.setdefault(queue, {})["queued"] = sum(levels.values())
    return [QueueInfo(name, name in stats.paused, c.get("queued", 0), c.get("running", 0), c.get("scheduled", 0),
                      c.get("dead", 0)) for name, c in sorted(counts.items())]

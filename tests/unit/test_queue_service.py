"""QueueService on the memory backend: names are checked before the backend sees them, the list comes from stats."""

from __future__ import annotations

import pytest

from hexq.adapters.memory import MemoryBackend
from hexq.core.clock import FakeClock
from hexq.core.errors import ValidationError
from hexq.core.model import Priority, Stats
from hexq.core.queues import QueueInfo, QueueService, queue_infos


async def test_pause_and_resume_check_the_name_first() -> None:
    backend = MemoryBackend(FakeClock())
    service = QueueService(backend, backend)

    with pytest.raises(ValidationError) as caught:
        await service.pause("no spaces")
    assert caught.value.field == "queue"
    assert await backend.paused() == frozenset()
    assert await service.pause("emails") is True and await service.resume("emails") is True


def test_queue_infos_merge_every_state_and_the_paused_set_by_name() -> None:
    stats = Stats(queued={"b": {Priority.LOW: 1, Priority.HIGH: 2}},
                  depth={("b", Priority.LOW, "queued"): 1, ("b", Priority.HIGH, "queued"): 2,
                         ("a", Priority.NORMAL, "running"): 4, ("a", Priority.HIGH, "dead"): 1,
                         ("a", Priority.LOW, "scheduled"): 5},
                  paused=frozenset({"c", "b"}))

    assert queue_infos(stats) == [QueueInfo("a", False, 0, 4, 5, 1), QueueInfo("b", True, 3),
                                  QueueInfo("c", True, 0)]

"""WorkerRegistry contract: beats stamp the backend's time, expire after their ttl, and leave forgets."""

from __future__ import annotations

from hexq.core.clock import FakeClock
from hexq.core.model import WorkerInfo
from hexq.core.ports import Backend

TTL = 10.0


def worker(worker_id: str, running: int = 0) -> WorkerInfo:
    # started_at and last_seen are the backend's to stamp: what a worker sends is ignored
    return WorkerInfo(worker_id, "host-1", 4242, ("default", "emails"), started_at=1.0, last_seen=2.0,
                      running=running)


async def test_beats_register_workers_listed_by_id(backend: Backend, clock: FakeClock) -> None:
    await backend.beat(worker("w-b", running=2), TTL)
    await backend.beat(worker("w-a"), TTL)

    assert await backend.workers() == [
        WorkerInfo("w-a", "host-1", 4242, ("default", "emails"), clock.now(), clock.now(), 0),
        WorkerInfo("w-b", "host-1", 4242, ("default", "emails"), clock.now(), clock.now(), 2),
    ]


async def test_a_beat_refreshes_last_seen_and_running_but_not_started_at(backend: Backend, clock: FakeClock) -> None:
    await backend.beat(worker("w1"), TTL)
    started = clock.now()
    clock.advance(9)
    await backend.beat(worker("w1", running=7), TTL)
    clock.advance(9)  # 18 s after it started, 9 s after its last beat: alive

    [seen] = await backend.workers()

    assert (seen.started_at, seen.last_seen, seen.running) == (started, started + 9, 7)


async def test_a_worker_without_a_beat_within_its_ttl_is_gone(backend: Backend, clock: FakeClock) -> None:
    await backend.beat(worker("w1"), TTL)
    await backend.beat(worker("w2"), 2 * TTL)
    clock.advance(TTL - 0.5)
    assert [w.id for w in await backend.workers()] == ["w1", "w2"]
    clock.advance(1)
    assert [w.id for w in await backend.workers()] == ["w2"]

    await backend.beat(worker("w1"), TTL)  # back after it expired: registered again, started now
    [again, _] = await backend.workers()
    assert again.started_at == again.last_seen == clock.now()


async def test_leave_forgets_a_worker_at_once(backend: Backend, clock: FakeClock) -> None:
    await backend.beat(worker("w1"), TTL)
    await backend.beat(worker("w2"), TTL)

    await backend.leave("w1")
    await backend.leave("never-seen")  # not an error

    assert [w.id for w in await backend.workers()] == ["w2"]


async def test_worker_ids_are_data(backend: Backend, clock: FakeClock) -> None:
    odd = "host with spaces:{tag}|pipe/ü-1"
    await backend.beat(WorkerInfo(odd, "hôst {x}", 1, ()), TTL)
    assert [(w.id, w.host, w.queues) for w in await backend.workers()] == [(odd, "hôst {x}", ())]
    await backend.leave(odd)
    assert await backend.workers() == []

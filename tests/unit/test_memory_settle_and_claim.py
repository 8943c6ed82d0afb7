"""MemoryBackend.settle_and_claim, the reference for SettleAndClaim: settle, then claim without waiting,
as one step."""

from __future__ import annotations

from hexq.adapters.memory import MemoryBackend
from hexq.core.clock import FakeClock
from hexq.core.model import Settlement, Task, TaskStatus
from hexq.core.ports import SettleAndClaim


async def stored(backend: MemoryBackend, clock: FakeClock, *ids: str) -> None:
    await backend.enqueue([Task(id=i, type="echo", payload={}, created_at=clock.now()) for i in ids])


async def test_the_settles_are_applied_before_the_claim_looks(clock: FakeClock) -> None:
    backend = MemoryBackend(clock)
    assert isinstance(backend, SettleAndClaim)
    await stored(backend, clock, "a")
    [lease] = await backend.claim(["default"], 1, lease_seconds=30.0, worker_id="w")
    released = Settlement(lease, lease.task.moved_to(TaskStatus.QUEUED, worker_id=None))
    applied, leases = await backend.settle_and_claim([released], ["default"], 5, lease_seconds=30.0, worker_id="w2")
    assert applied == [True]
    # The task it gave back is queued again by the settle, so the claim of the same call takes it.
    assert [(le.task.id, le.task.attempts, le.task.worker_id) for le in leases] == [("a", 2, "w2")]
    assert leases[0].token != lease.token


async def test_a_stale_settle_is_refused_and_the_claim_still_happens(clock: FakeClock) -> None:
    backend = MemoryBackend(clock)
    await stored(backend, clock, "a", "b", "c")
    [first] = await backend.claim(["default"], 1, lease_seconds=1.0, worker_id="w")
    clock.advance(2.0)
    [taken] = await backend.reclaim_expired(10, 30.0)  # the first worker is fenced out
    done = Settlement(first, first.task.moved_to(TaskStatus.SUCCEEDED))
    applied, leases = await backend.settle_and_claim([done], ["default"], 5, lease_seconds=30.0, worker_id="w")
    assert applied == [False] and sorted(le.task.id for le in leases) == ["b", "c"]
    still = await backend.get("a")
    assert still is not None and still.status is TaskStatus.RUNNING and taken.task.id == "a"


async def test_it_claims_at_most_n_and_never_waits(clock: FakeClock) -> None:
    backend = MemoryBackend(clock)
    await stored(backend, clock, "a", "b", "c")
    [lease] = await backend.claim(["default"], 1, lease_seconds=30.0, worker_id="w")
    done = Settlement(lease, lease.task.moved_to(TaskStatus.SUCCEEDED, result=1))
    applied, leases = await backend.settle_and_claim([done], ["default"], 1, lease_seconds=30.0, worker_id="w")
    assert applied == [True] and [le.task.id for le in leases] == ["b"]
    finished = await backend.get("a")
    assert finished is not None and (finished.status, finished.finished_at) == (TaskStatus.SUCCEEDED, clock.now())
    applied, leases = await backend.settle_and_claim([], ["other"], 10, lease_seconds=30.0, worker_id="w")
    assert (applied, leases) == ([], [])  # an empty queue answers at once
    assert await backend.settle_and_claim([], ["default"], 0, lease_seconds=30.0, worker_id="w") == ([], [])

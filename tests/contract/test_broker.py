"""Broker contract: enqueue, claim (priority, FIFO, queue sets, batches, delays, waiting), leases and fencing."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

from hexq.core import outcome
from hexq.core.clock import FakeClock, stamped
from hexq.core.model import Lease, Priority, Settlement, Task, TaskStatus
from hexq.core.ports import Backend
from hexq.core.registry import Registry
from hexq.core.retry import RetryPolicy
from hexq.core.services import SubmitRequest, TaskService

LEASE = 30.0
MakeTask = Callable[..., Task]


async def claim(backend: Backend, n: int = 1, queues: tuple[str, ...] = ("default",), *,
                lease: float = LEASE, wait: float = 0.0) -> list[Lease]:
    return await backend.claim(queues, n, lease_seconds=lease, worker_id="w1", wait=wait)


async def claim_all_one_by_one(backend: Backend, queues: tuple[str, ...] = ("default",)) -> list[Lease]:
    leases: list[Lease] = []
    while batch := await claim(backend, 1, queues):
        leases.extend(batch)
    return leases


# -- enqueue --------------------------------------------------------------------------------
async def test_enqueued_task_reads_back_unchanged(backend: Backend, make_task: MakeTask) -> None:
    task = make_task(payload={"to": "a@b.c", "n": [1, 2.5, None, {"deep": True}]}, priority=Priority.HIGH,
                     queue="q1", max_attempts=7, timeout=12.5, idempotency_key="k1", tenant="acme")
    assert await backend.enqueue([task]) == [task]
    assert await backend.get(task.id) == task


async def test_get_unknown_task_is_none(backend: Backend) -> None:
    assert await backend.get("nope") is None


async def test_bulk_enqueue_returns_one_task_per_input_in_order(backend: Backend, make_task: MakeTask) -> None:
    tasks = [make_task(payload={"i": i}) for i in range(20)]
    stored = await backend.enqueue(tasks)
    assert [t.id for t in stored] == [t.id for t in tasks]


# -- claim order ----------------------------------------------------------------------------
async def test_strict_priority_across_the_four_levels(backend: Backend, make_task: MakeTask) -> None:
    levels = [p for p in Priority for _ in range(3)]
    random.Random(7).shuffle(levels)
    tasks = [make_task(priority=p) for p in levels]
    await backend.enqueue(tasks)

    claimed = [lease.task for lease in await claim_all_one_by_one(backend)]

    assert [t.priority for t in claimed] == sorted(levels, reverse=True)
    for level in Priority:  # and FIFO within each level
        assert [t.id for t in claimed if t.priority == level] == [t.id for t in tasks if t.priority == level]


async def test_fifo_within_a_priority_level(backend: Backend, make_task: MakeTask) -> None:
    tasks = [make_task(payload={"i": i}) for i in range(50)]
    await backend.enqueue(tasks[:25])
    await backend.enqueue(tasks[25:])

    claimed = await claim_all_one_by_one(backend)

    assert [lease.task.id for lease in claimed] == [t.id for t in tasks]


async def test_claim_takes_only_from_the_given_queues(backend: Backend, make_task: MakeTask) -> None:
    by_queue = {q: [make_task(queue=q) for _ in range(3)] for q in ("a", "b", "c")}
    await backend.enqueue([t for tasks in by_queue.values() for t in tasks])

    leases = await claim(backend, 100, ("a", "c"))

    assert {lease.task.queue for lease in leases} == {"a", "c"}
    assert len(leases) == 6
    assert [lease.task.id for lease in await claim(backend, 100, ("b",))] == [t.id for t in by_queue["b"]]


async def test_priority_is_strict_across_a_queue_set(backend: Backend, make_task: MakeTask) -> None:
    normal = make_task(queue="a")
    urgent = make_task(queue="b", priority=Priority.CRITICAL)
    await backend.enqueue([normal, urgent])

    assert [lease.task.id for lease in await claim(backend, 2, ("a", "b"))] == [urgent.id, normal.id]


async def test_batch_claim_takes_up_to_n(backend: Backend, make_task: MakeTask) -> None:
    tasks = [make_task() for _ in range(7)]
    await backend.enqueue(tasks)

    first, second, third = await claim(backend, 3), await claim(backend, 10), await claim(backend, 10)

    assert [lease.task.id for lease in first + second] == [t.id for t in tasks]
    assert (len(first), len(second), third) == (3, 4, [])


async def test_claim_moves_the_task_to_running_under_a_fresh_lease(backend: Backend, make_task: MakeTask,
                                                                    clock: FakeClock) -> None:
    tasks = [make_task(), make_task()]
    await backend.enqueue(tasks)

    leases = await backend.claim(["default"], 2, lease_seconds=LEASE, worker_id="worker-7")

    for lease in leases:
        assert lease.task.status is TaskStatus.RUNNING
        assert (lease.task.attempts, lease.task.started_at, lease.task.worker_id) == (1, clock.now(), "worker-7")
        assert lease.expires_at == clock.now() + LEASE
        assert await backend.get(lease.task.id) == lease.task
    assert leases[0].token != leases[1].token
    assert await claim(backend, 10) == []


# -- delays ---------------------------------------------------------------------------------
async def test_delayed_task_is_claimable_only_once_due(backend: Backend, service: TaskService,
                                                       clock: FakeClock) -> None:
    submitted = await service.submit(SubmitRequest(type="echo", payload={}, delay=10))
    assert submitted.task.status is TaskStatus.SCHEDULED

    clock.advance(9.9)
    assert await claim(backend) == []
    clock.advance(0.1)
    assert [lease.task.id for lease in await claim(backend)] == [submitted.task.id]


async def test_promote_due_moves_due_tasks_to_queued(backend: Backend, make_task: MakeTask,
                                                     clock: FakeClock) -> None:
    due = [make_task(status=TaskStatus.SCHEDULED, run_at=clock.now() + d) for d in (1, 2, 3)]
    later = make_task(status=TaskStatus.SCHEDULED, run_at=clock.now() + 100)
    await backend.enqueue([*due, later])

    clock.advance(5)
    assert await backend.promote_due(limit=2) == 2
    assert await backend.promote_due(limit=10) == 1
    assert await backend.promote_due(limit=10) == 0

    assert [(await backend.get(t.id)).status for t in due] == [TaskStatus.QUEUED] * 3  # type: ignore[union-attr]
    assert (await backend.get(later.id)).status is TaskStatus.SCHEDULED  # type: ignore[union-attr]


# -- leases, fencing, heartbeats ------------------------------------------------------------
async def test_expired_lease_is_reclaimed_with_a_new_token(backend: Backend, make_task: MakeTask,
                                                           clock: FakeClock) -> None:
    await backend.enqueue([make_task()])
    [lease] = await claim(backend)

    clock.advance(LEASE - 1)
    assert await backend.reclaim_expired(limit=10, lease_seconds=60) == []
    clock.advance(1)
    [taken] = await backend.reclaim_expired(limit=10, lease_seconds=60)

    assert taken.task.id == lease.task.id
    assert taken.token != lease.token
    assert taken.expires_at == clock.now() + 60
    assert taken.task.attempts == 1
    assert await backend.reclaim_expired(limit=10, lease_seconds=60) == []  # it is leased again


async def test_reclaimed_lease_fences_out_the_lost_worker(backend: Backend, make_task: MakeTask,
                                                          clock: FakeClock) -> None:
    await backend.enqueue([make_task()])
    [old] = await claim(backend)
    clock.advance(LEASE + 1)
    [new] = await backend.reclaim_expired(limit=10, lease_seconds=LEASE)

    late = outcome.succeeded(old.task, "too late")
    assert await backend.settle([Settlement(old, late)]) == [False]
    assert await backend.extend([old], LEASE) == [None]
    assert await backend.get(old.task.id) == old.task  # still running, untouched

    assert await backend.settle([Settlement(new, outcome.succeeded(new.task, "ok"))]) == [True]


async def test_lost_task_is_redelivered_and_the_attempt_counts(backend: Backend, make_task: MakeTask,
                                                               clock: FakeClock, registry: Registry) -> None:
    await backend.enqueue([make_task(type="flaky")])
    [first] = await claim(backend)
    clock.advance(LEASE + 1)
    [taken] = await backend.reclaim_expired(limit=10, lease_seconds=LEASE)
    retry = outcome.failed(taken.task, "lease expired", registry.get("flaky").retry)
    assert await backend.settle([Settlement(taken, retry)]) == [True]

    clock.advance(10)
    [second] = await claim(backend)

    assert second.task.id == first.task.id
    assert second.task.attempts == 2
    assert len({first.token, taken.token, second.token}) == 3


async def test_extend_pushes_the_expiry_so_the_lease_is_not_reclaimed(backend: Backend, make_task: MakeTask,
                                                                      clock: FakeClock) -> None:
    await backend.enqueue([make_task()])
    [lease] = await claim(backend)

    clock.advance(20)
    [renewed] = await backend.extend([lease], LEASE)
    assert renewed is not None
    assert (renewed.token, renewed.expires_at) == (lease.token, clock.now() + LEASE)

    clock.advance(20)  # 40 s after the claim, 20 s after the heartbeat
    assert await backend.reclaim_expired(limit=10, lease_seconds=LEASE) == []
    clock.advance(10)
    assert [t.task.id for t in await backend.reclaim_expired(limit=10, lease_seconds=LEASE)] == [lease.task.id]


async def test_extend_answers_per_lease(backend: Backend, make_task: MakeTask, clock: FakeClock) -> None:
    await backend.enqueue([make_task(), make_task()])
    done, running = await claim(backend, 2)
    await backend.settle([Settlement(done, outcome.succeeded(done.task, None))])

    renewed = await backend.extend([done, running], LEASE)

    assert renewed[0] is None
    assert renewed[1] is not None and renewed[1].task.id == running.task.id


async def test_settle_writes_the_new_state_once(backend: Backend, make_task: MakeTask, clock: FakeClock) -> None:
    await backend.enqueue([make_task()])
    [lease] = await claim(backend)
    clock.advance(3)
    done = outcome.succeeded(lease.task, {"answer": 42})

    assert await backend.settle([Settlement(lease, done)]) == [True]
    assert await backend.get(lease.task.id) == stamped(done, clock.now())  # finished by the backend's clock
    assert await backend.settle([Settlement(lease, done)]) == [False]  # the lease ended with the first settle
    assert await backend.reclaim_expired(limit=10, lease_seconds=LEASE) == []


async def test_settle_batch_answers_per_settlement(backend: Backend, make_task: MakeTask, clock: FakeClock) -> None:
    await backend.enqueue([make_task() for _ in range(3)])
    a, b, c = await claim(backend, 3)
    stale_b = Lease(b.task, b.token + 1000, b.expires_at)

    applied = await backend.settle([Settlement(lease, outcome.succeeded(lease.task, i))
                                    for i, lease in enumerate((a, stale_b, c))])

    assert applied == [True, False, True]
    assert (await backend.get(b.task.id)) == b.task


# -- retries and dead letters ---------------------------------------------------------------
async def test_failed_attempts_retry_with_backoff_then_die(backend: Backend, service: TaskService,
                                                           clock: FakeClock, registry: Registry) -> None:
    policy = registry.get("flaky").retry  # base 10 s, no jitter
    task = (await service.submit(SubmitRequest(type="flaky", payload={"x": 1}))).task
    for attempt, delay in ((1, 10.0), (2, 20.0)):
        [lease] = await claim(backend)
        assert lease.task.attempts == attempt
        retry = outcome.failed(lease.task, "boom", policy)
        assert await backend.settle([Settlement(lease, retry)]) == [True]
        stored = await backend.get(task.id)
        assert stored is not None
        assert (stored.status, stored.run_at, stored.error) == (TaskStatus.SCHEDULED, clock.now() + delay, "boom")
        clock.advance(delay - 0.5)
        assert await claim(backend) == []
        clock.advance(0.5)

    [last] = await claim(backend)
    assert last.task.attempts == 3
    await backend.settle([Settlement(last, outcome.failed(last.task, "boom", policy))])
    dead = await backend.get(task.id)
    assert dead is not None
    assert (dead.status, dead.attempts, dead.finished_at) == (TaskStatus.DEAD, 3, clock.now())
    clock.advance(1000)
    assert await claim(backend) == []


async def test_released_task_is_claimable_again_at_once(backend: Backend, make_task: MakeTask,
                                                        clock: FakeClock) -> None:
    await backend.enqueue([make_task()])
    [lease] = await claim(backend)
    assert await backend.settle([Settlement(lease, outcome.released(lease.task))]) == [True]

    [again] = await claim(backend)
    assert (again.task.id, again.task.attempts) == (lease.task.id, 2)


# -- waiting --------------------------------------------------------------------------------
async def test_blocking_claim_returns_a_task_enqueued_while_it_waits(backend: Backend, make_task: MakeTask) -> None:
    task = make_task()

    async def enqueue_later() -> None:
        await asyncio.sleep(0.05)
        await backend.enqueue([task])

    producer = asyncio.create_task(enqueue_later())
    leases = await claim(backend, wait=5.0)
    await producer

    assert [lease.task.id for lease in leases] == [task.id]


async def test_blocking_claim_returns_nothing_when_nothing_comes(backend: Backend, make_task: MakeTask) -> None:
    await backend.enqueue([make_task(queue="other")])

    assert await claim(backend, wait=0.2) == []


async def test_a_failed_attempt_keeps_its_traceback_until_a_success_clears_it(backend: Backend, make_task: MakeTask,
                                                                              clock: FakeClock) -> None:
    trace = "Traceback (most recent call last):\n  File \"app.py\", line 3, in f\nKeyError: 'é'\n" * 50
    await backend.enqueue([make_task(max_attempts=3)])
    [lease] = await claim(backend)
    retry = outcome.failed(lease.task, "KeyError: 'é'", RetryPolicy(base=1, jitter=0), traceback=trace)
    await backend.settle([Settlement(lease, retry)])

    stored = await backend.get(lease.task.id)
    assert stored is not None and (stored.error, stored.traceback) == ("KeyError: 'é'", trace)

    clock.advance(1)
    await backend.promote_due(10)
    [again] = await claim(backend)
    assert again.task.traceback == trace  # the running attempt still shows the last failure
    await backend.settle([Settlement(again, outcome.succeeded(again.task, "ok"))])
    done = await backend.get(lease.task.id)
    assert done is not None and (done.error, done.traceback) == (None, None)

"""TaskStore and Sweeper contract: dead letters and replay, cancel, idempotency, stats, queries, purge."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hexq.core import outcome
from hexq.core.clock import FakeClock, stamped
from hexq.core.errors import IdempotencyMismatch, InvalidTransition
from hexq.core.model import Lease, Priority, Settlement, Task, TaskQuery, TaskStatus
from hexq.core.ports import Backend
from hexq.core.retry import RetryPolicy
from hexq.core.services import SubmitRequest, TaskService

MakeTask = Callable[..., Task]
LEASE = 30.0


async def claim(backend: Backend, n: int = 1, queues: tuple[str, ...] = ("default",)) -> list[Lease]:
    return await backend.claim(queues, n, lease_seconds=LEASE, worker_id="w1")


async def run_to(backend: Backend, clock: FakeClock, status: TaskStatus, n: int = 1) -> list[Task]:
    """Claim `n` tasks and settle them as succeeded or dead; returns them as stored (finished now, by the
    backend's clock)."""
    leases = await claim(backend, n)
    assert len(leases) == n
    final = [outcome.succeeded(lease.task, "ok") if status is TaskStatus.SUCCEEDED
             else outcome.failed(lease.task, "bad", RetryPolicy(), retryable=False) for lease in leases]
    assert await backend.settle([Settlement(lease, task) for lease, task in zip(leases, final, strict=True)])
    return [stamped(task, clock.now()) for task in final]


async def submit(service: TaskService, **fields: object) -> Task:
    request = SubmitRequest(**({"type": "echo", "payload": {}} | fields))  # type: ignore[arg-type]
    return (await service.submit(request)).task


# -- dead letters ---------------------------------------------------------------------------
async def test_dead_tasks_are_listed_and_replayed(backend: Backend, service: TaskService, clock: FakeClock) -> None:
    for i in range(3):
        await submit(service, payload={"i": i})
    dead = await run_to(backend, clock, TaskStatus.DEAD, 2)

    page = await backend.query(TaskQuery(status=TaskStatus.DEAD))
    assert {t.id for t in page.items} == {t.id for t in dead}

    clock.advance(5)
    replayed = await service.replay([dead[0].id])
    assert [t.id for t in replayed] == [dead[0].id]
    stored = await backend.get(dead[0].id)
    assert stored is not None
    assert (stored.status, stored.attempts, stored.run_at, stored.finished_at) == (TaskStatus.QUEUED, 0,
                                                                                   clock.now(), None)
    assert [t.id for t in (await backend.query(TaskQuery(status=TaskStatus.DEAD))).items] == [dead[1].id]

    leases = await claim(backend, 10)
    assert dead[0].id in {lease.task.id for lease in leases}
    assert await service.replay([dead[0].id]) == []  # not dead any more: nothing to replay


# -- cancel ---------------------------------------------------------------------------------
async def test_queued_and_scheduled_tasks_can_be_cancelled(backend: Backend, service: TaskService,
                                                           clock: FakeClock) -> None:
    queued = await submit(service)
    scheduled = await submit(service, delay=60)

    for task in (queued, scheduled):
        cancelled = await service.cancel(task.id)
        assert cancelled.status is TaskStatus.CANCELLED
        assert await backend.get(task.id) == cancelled

    clock.advance(120)
    assert await backend.promote_due(limit=10) == 0
    assert await claim(backend, 10) == []


@pytest.mark.parametrize("status", [TaskStatus.SUCCEEDED, TaskStatus.DEAD])
async def test_finished_tasks_cannot_be_cancelled(backend: Backend, service: TaskService, clock: FakeClock,
                                                  status: TaskStatus) -> None:
    task = await submit(service)
    await run_to(backend, clock, status)
    before = await backend.get(task.id)

    with pytest.raises(InvalidTransition):
        await service.cancel(task.id)
    assert await backend.get(task.id) == before


async def test_cancelling_a_running_task_asks_its_worker(backend: Backend, service: TaskService) -> None:
    task = await submit(service)
    [lease] = await claim(backend)

    asked = await service.cancel(task.id)

    assert asked.status is TaskStatus.RUNNING  # test_cancel_running.py follows it to the end
    [renewed] = await backend.extend([lease], 30)
    assert renewed is not None and renewed.cancel_requested


async def test_transition_is_a_compare_and_set_on_status(backend: Backend, make_task: MakeTask,
                                                         clock: FakeClock) -> None:
    task = make_task()
    await backend.enqueue([task])
    cancelled = task.moved_to(TaskStatus.CANCELLED, finished_at=clock.now())

    assert await backend.transition(cancelled, expected=TaskStatus.SCHEDULED) is None
    assert await backend.get(task.id) == task
    assert await backend.transition(cancelled, expected=TaskStatus.QUEUED) is not None
    assert await backend.get(task.id) == cancelled
    assert await backend.transition(make_task(status=TaskStatus.CANCELLED), expected=TaskStatus.QUEUED) is None


# -- idempotency ----------------------------------------------------------------------------
async def test_same_tenant_and_key_returns_the_original_task(backend: Backend, service: TaskService) -> None:
    first = await service.submit(SubmitRequest(type="echo", payload={"a": 1}, idempotency_key="k"))
    again = await service.submit(SubmitRequest(type="echo", payload={"a": 1}, idempotency_key="k"))
    other = await service.submit(SubmitRequest(type="echo", payload={"a": 1}, idempotency_key="k", tenant="t2"))

    assert (first.created, again.created, other.created) == (True, False, True)
    assert again.task == first.task
    assert other.task.id != first.task.id
    assert len((await backend.query(TaskQuery())).items) == 2


async def test_reused_key_with_a_different_payload_is_a_mismatch(service: TaskService) -> None:
    await service.submit(SubmitRequest(type="echo", payload={"a": 1}, idempotency_key="k"))

    with pytest.raises(IdempotencyMismatch):
        await service.submit(SubmitRequest(type="echo", payload={"a": 2}, idempotency_key="k"))


async def test_a_bulk_reusing_a_key_for_a_different_request_stores_nothing(backend: Backend,
                                                                           make_task: MakeTask) -> None:
    await backend.enqueue([make_task(payload={"a": 1}, idempotency_key="k")])
    fresh, clash = make_task(), make_task(payload={"a": 2}, idempotency_key="k")

    with pytest.raises(IdempotencyMismatch):
        await backend.enqueue([fresh, clash])
    with pytest.raises(IdempotencyMismatch):  # two different requests under one key within the bulk
        await backend.enqueue([fresh, make_task(idempotency_key="j"), make_task(payload={"b": 1}, idempotency_key="j")])
    assert await backend.get(fresh.id) is None
    assert len((await backend.query(TaskQuery())).items) == 1


async def test_duplicate_keys_within_one_batch_store_one_task(backend: Backend, make_task: MakeTask) -> None:
    first, second = make_task(idempotency_key="k"), make_task(idempotency_key="k")

    stored = await backend.enqueue([first, second, make_task(idempotency_key="k", tenant="t2")])

    assert [t.id for t in stored[:2]] == [first.id, first.id]
    assert stored[2].id not in (first.id, second.id)
    assert await backend.get(second.id) is None


async def test_the_key_still_returns_the_task_after_it_ran(backend: Backend, make_task: MakeTask,
                                                           clock: FakeClock) -> None:
    task = make_task(idempotency_key="k")
    await backend.enqueue([task])
    [done] = await run_to(backend, clock, TaskStatus.SUCCEEDED)

    assert await backend.enqueue([make_task(idempotency_key="k")]) == [done]


# -- stats ----------------------------------------------------------------------------------
async def test_stats_count_by_status_and_queued_by_queue_and_priority(backend: Backend, make_task: MakeTask,
                                                                      clock: FakeClock) -> None:
    await backend.enqueue([make_task(priority=Priority.LOW) for _ in range(3)])  # claimed below
    await backend.enqueue([make_task(priority=Priority.HIGH), make_task(priority=Priority.HIGH),
                           make_task(queue="emails", priority=Priority.CRITICAL),
                           make_task(status=TaskStatus.SCHEDULED, run_at=clock.now() + 60)])
    await run_to(backend, clock, TaskStatus.SUCCEEDED)  # a high one
    await run_to(backend, clock, TaskStatus.DEAD)  # the other high one
    await claim(backend)  # a low one stays running

    stats = await backend.stats()

    assert stats.by_status == {TaskStatus.SCHEDULED: 1, TaskStatus.QUEUED: 3, TaskStatus.RUNNING: 1,
                               TaskStatus.SUCCEEDED: 1, TaskStatus.FAILED: 0, TaskStatus.DEAD: 1,
                               TaskStatus.CANCELLED: 0}
    assert stats.queued == {"default": {Priority.LOW: 2, Priority.NORMAL: 0, Priority.HIGH: 0, Priority.CRITICAL: 0},
                            "emails": {Priority.LOW: 0, Priority.NORMAL: 0, Priority.HIGH: 0, Priority.CRITICAL: 1}}
    assert stats.backlog == await backend.backlog() == 3


async def test_stats_of_an_empty_backend(backend: Backend) -> None:
    stats = await backend.stats()

    assert stats.by_status == {status: 0 for status in TaskStatus}
    assert stats.queued == {}
    assert stats.backlog == await backend.backlog() == 0


# -- query ----------------------------------------------------------------------------------
async def test_query_lists_newest_first_and_filters(backend: Backend, make_task: MakeTask) -> None:
    tasks = [make_task(type=("echo", "mail")[i % 2], queue=("a", "b", "c")[i % 3], tenant=("t1", "t2")[i // 6])
             for i in range(12)]
    await backend.enqueue(tasks)
    newest_first = tasks[::-1]

    async def ids(**filters: object) -> list[str]:
        page = await backend.query(TaskQuery(limit=100, **filters))  # type: ignore[arg-type]
        assert page.next_cursor is None
        return [t.id for t in page.items]

    assert await ids() == [t.id for t in newest_first]
    assert await ids(type="mail") == [t.id for t in newest_first if t.type == "mail"]
    assert await ids(queue="b") == [t.id for t in newest_first if t.queue == "b"]
    assert await ids(tenant="t2", queue="a") == [t.id for t in newest_first if t.tenant == "t2" and t.queue == "a"]
    assert await ids(status=TaskStatus.QUEUED, type="echo") == [t.id for t in newest_first if t.type == "echo"]
    assert await ids(status=TaskStatus.DEAD) == []


@pytest.mark.parametrize("limit", [1, 7, 10, 30])
async def test_pages_follow_cursors_without_duplicates_or_gaps(backend: Backend, make_task: MakeTask,
                                                              limit: int) -> None:
    tasks = [make_task(payload={"i": i}) for i in range(30)]
    await backend.enqueue(tasks)

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = await backend.query(TaskQuery(limit=limit, cursor=cursor))
        assert len(page.items) <= limit
        seen.extend(t.id for t in page.items)
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor

    assert seen == [t.id for t in reversed(tasks)]
    assert pages == -(-30 // limit)


async def test_pages_of_a_filtered_query(backend: Backend, make_task: MakeTask, clock: FakeClock) -> None:
    tasks = [make_task(queue=("a", "b")[i % 2]) for i in range(25)]
    await backend.enqueue(tasks)
    await claim(backend, 5, ("a",))  # running tasks must not show up in a queued listing

    seen: list[str] = []
    page = await backend.query(TaskQuery(status=TaskStatus.QUEUED, queue="a", limit=3))
    seen.extend(t.id for t in page.items)
    while page.next_cursor is not None:
        page = await backend.query(TaskQuery(status=TaskStatus.QUEUED, queue="a", limit=3, cursor=page.next_cursor))
        seen.extend(t.id for t in page.items)

    assert seen == [t.id for t in reversed(tasks) if t.queue == "a"][:8]


async def test_a_new_task_does_not_shift_later_pages(backend: Backend, make_task: MakeTask) -> None:
    tasks = [make_task() for _ in range(6)]
    await backend.enqueue(tasks)
    first = await backend.query(TaskQuery(limit=3))
    await backend.enqueue([make_task()])

    second = await backend.query(TaskQuery(limit=3, cursor=first.next_cursor))

    assert [t.id for t in first.items + second.items] == [t.id for t in reversed(tasks)]


@pytest.mark.parametrize("cursor", ["", "garbage", "-5", "²", "9" * 5000],
                         ids=["empty", "word", "negative", "superscript", "huge"])
async def test_a_malformed_cursor_starts_from_the_newest(backend: Backend, make_task: MakeTask, cursor: str) -> None:
    tasks = [make_task() for _ in range(3)]
    await backend.enqueue(tasks)

    page = await backend.query(TaskQuery(limit=2, cursor=cursor))

    assert [t.id for t in page.items] == [tasks[2].id, tasks[1].id]


# -- purge ----------------------------------------------------------------------------------
async def test_purge_deletes_old_succeeded_and_cancelled_tasks(backend: Backend, service: TaskService,
                                                               clock: FakeClock) -> None:
    for _ in range(3):
        await submit(service)
    [succeeded] = await run_to(backend, clock, TaskStatus.SUCCEEDED)
    [dead] = await run_to(backend, clock, TaskStatus.DEAD)
    [running] = await claim(backend)
    cancelled = await service.cancel((await submit(service, idempotency_key="k")).id)
    clock.advance(100)
    await submit(service)
    [recent] = await run_to(backend, clock, TaskStatus.SUCCEEDED)

    assert await backend.purge_finished(older_than=50, limit=100) == 2

    assert await backend.get(succeeded.id) is None
    assert await backend.get(cancelled.id) is None
    assert await backend.get(dead.id) == dead
    assert await backend.get(recent.id) == recent
    assert await backend.get(running.task.id) == running.task
    # the purged task's idempotency key is free again
    assert (await service.submit(SubmitRequest(type="echo", payload={}, idempotency_key="k"))).created


async def test_purge_respects_its_limit(backend: Backend, make_task: MakeTask, clock: FakeClock) -> None:
    await backend.enqueue([make_task() for _ in range(5)])
    await run_to(backend, clock, TaskStatus.SUCCEEDED, 5)
    clock.advance(10)

    assert await backend.purge_finished(older_than=1, limit=3) == 3
    assert await backend.purge_finished(older_than=1, limit=3) == 2
    assert (await backend.stats()).by_status[TaskStatus.SUCCEEDED] == 0

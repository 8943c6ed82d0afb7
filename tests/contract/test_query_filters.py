"""TaskStore contract: the priority filter and the created-time window (TaskQuery.priority, created_after,
created_before), alone and with the other filters, across pages, and at their edges."""

from __future__ import annotations

from collections.abc import Callable

from test_search import every_page

from hexq.core.clock import FakeClock
from hexq.core.model import Priority, Task, TaskQuery, TaskStatus
from hexq.core.ports import Backend

MakeTask = Callable[..., Task]


async def _enqueue_over_time(backend: Backend, clock: FakeClock, batches: list[list[Task]]) -> list[float]:
    """Each batch enqueued 10 s after the one before; the created_at each batch got, read back from the backend
    (whose clock it is)."""
    created = []
    for batch in batches:
        await backend.enqueue(batch)
        stored = await backend.get(batch[0].id)
        assert stored is not None
        created.append(stored.created_at)
        clock.advance(10)
    return created


async def test_priority_alone_lists_that_level_newest_first_across_pages(backend: Backend,
                                                                        make_task: MakeTask) -> None:
    levels = [Priority.HIGH, Priority.LOW, Priority.HIGH, Priority.NORMAL, Priority.HIGH, Priority.CRITICAL]
    tasks = [make_task(priority=level, payload={"i": i}) for i, level in enumerate(levels)]
    await backend.enqueue(tasks)

    ids, pages = await every_page(backend, priority=Priority.HIGH, limit=2)
    assert ids == [tasks[4].id, tasks[2].id, tasks[0].id]
    assert len(pages) >= 2 and pages[-1].complete and all(len(page.items) <= 2 for page in pages)
    low = await backend.query(TaskQuery(priority=Priority.LOW))
    assert [t.id for t in low.items] == [tasks[1].id] and low.complete


async def test_the_window_includes_its_start_and_excludes_its_end(backend: Backend, make_task: MakeTask,
                                                                 clock: FakeClock) -> None:
    batches = [[make_task(payload={"batch": b, "i": i}) for i in range(2)] for b in range(3)]
    first, second, third = await _enqueue_over_time(backend, clock, batches)
    assert first < second < third

    ids, _ = await every_page(backend, created_after=second, created_before=third)
    assert ids == [t.id for t in reversed(batches[1])]
    ids, _ = await every_page(backend, created_after=second)
    assert ids == [t.id for t in reversed(batches[1] + batches[2])]
    ids, _ = await every_page(backend, created_before=second)
    assert ids == [t.id for t in reversed(batches[0])]
    ids, _ = await every_page(backend, created_after=third + 0.001)
    assert ids == []


async def test_an_empty_window_lists_nothing(backend: Backend, make_task: MakeTask, clock: FakeClock) -> None:
    (created,) = await _enqueue_over_time(backend, clock, [[make_task()]])

    for after, before in ((created, created), (created + 5, created - 5)):
        page = await backend.query(TaskQuery(created_after=after, created_before=before))
        assert page.items == []
        ids, pages = await every_page(backend, created_after=after, created_before=before)
        assert ids == [] and pages[-1].complete


async def test_priority_and_window_combine_with_status_type_and_search(backend: Backend, make_task: MakeTask,
                                                                      clock: FakeClock) -> None:
    old = [make_task(type="mail", priority=Priority.HIGH, payload={"vip": True}),
           make_task(type="mail", priority=Priority.HIGH, payload={"vip": True})]
    new = [make_task(type="mail", priority=Priority.HIGH, payload={"vip": True}),
           make_task(type="mail", priority=Priority.HIGH, payload={"vip": False}),
           make_task(type="echo", priority=Priority.HIGH, payload={"vip": True}),
           make_task(type="mail", priority=Priority.LOW, payload={"vip": True}),
           make_task(type="mail", priority=Priority.HIGH, payload={"vip": True}, run_at=clock.now() + 3600)]
    _, since = await _enqueue_over_time(backend, clock, [old, new])
    high_mail = {"priority": Priority.HIGH, "type": "mail", "created_after": since}

    ids, _ = await every_page(backend, **high_mail, search='"vip":true', limit=1)
    assert ids == [new[4].id, new[0].id]
    ids, _ = await every_page(backend, **high_mail, status=TaskStatus.QUEUED, queue="default", limit=1)
    assert ids == [new[1].id, new[0].id]
    ids, _ = await every_page(backend, **high_mail, status=TaskStatus.SCHEDULED)
    assert ids == [new[4].id]
    ids, _ = await every_page(backend, priority=Priority.HIGH, status=TaskStatus.QUEUED, created_before=since)
    assert ids == [old[1].id, old[0].id]


async def test_a_claimed_task_keeps_its_place_in_the_window(backend: Backend, make_task: MakeTask,
                                                           clock: FakeClock) -> None:
    batches = [[make_task(priority=Priority.CRITICAL)], [make_task(priority=Priority.CRITICAL)]]
    first, second = await _enqueue_over_time(backend, clock, batches)
    leases = await backend.claim(("default",), 2, lease_seconds=30, worker_id="w1")
    assert len(leases) == 2

    ids, _ = await every_page(backend, status=TaskStatus.RUNNING, priority=Priority.CRITICAL, created_after=second)
    assert ids == [batches[1][0].id]
    ids, _ = await every_page(backend, status=TaskStatus.RUNNING, created_before=second)
    assert ids == [batches[0][0].id]


async def test_a_search_bounded_by_max_scan_continues_through_the_filters(backend: Backend, make_task: MakeTask,
                                                                         clock: FakeClock) -> None:
    old = [make_task(priority=Priority.HIGH if i % 2 else Priority.LOW, payload={"n": i}) for i in range(6)]
    new = [make_task(priority=Priority.HIGH, payload={"n": 10 + i}) for i in range(6)]
    _, since = await _enqueue_over_time(backend, clock, [old, new])

    first = await backend.query(TaskQuery(search='"n":', priority=Priority.HIGH, created_before=since, max_scan=4))
    assert first.items == [] and not first.complete and 1 <= first.scanned <= 4
    ids, pages = await every_page(backend, search='"n":', priority=Priority.HIGH, created_before=since, max_scan=4)
    assert ids == [old[5].id, old[3].id, old[1].id]
    assert all(page.scanned <= 4 for page in pages)

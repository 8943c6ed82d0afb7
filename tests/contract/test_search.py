"""TaskStore contract: payload search (TaskQuery.search), bounded by max_scan, with cursors that continue the scan."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hexq.core import outcome
from hexq.core.model import Page, Settlement, Task, TaskQuery, TaskStatus
from hexq.core.ports import Backend
from hexq.core.retry import RetryPolicy

MakeTask = Callable[..., Task]


async def every_page(backend: Backend, **fields: Any) -> tuple[list[str], list[Page]]:
    """Follow cursors to the end: the ids in order and every page."""
    pages = [await backend.query(TaskQuery(**fields))]
    while pages[-1].next_cursor is not None:
        assert len(pages) < 100, "the cursor does not move"
        pages.append(await backend.query(TaskQuery(**fields, cursor=pages[-1].next_cursor)))
    return [t.id for page in pages for t in page.items], pages


async def test_search_matches_a_substring_of_the_payload_json(backend: Backend, make_task: MakeTask) -> None:
    tasks = [make_task(payload={"to": "ann@example.com", "n": 1}), make_task(payload={"to": "bob@example.com"}),
             make_task(payload={"to": "Ann@Example.com"}), make_task(payload={"note": "see ann@example.com"})]
    await backend.enqueue(tasks)

    ids, pages = await every_page(backend, search="ann@example.com")
    assert ids == [tasks[3].id, tasks[0].id]  # newest first; case-sensitive
    assert (await backend.query(TaskQuery(search='"to":"ann@'))).items == [(await backend.get(tasks[0].id))]
    assert [t.id for t in (await backend.query(TaskQuery(search='"n":1}'))).items] == [tasks[0].id]
    assert pages[-1].complete and sum(p.scanned for p in pages) >= 4


async def test_search_reads_non_ascii_whatever_json_the_backend_wrote(backend: Backend, make_task: MakeTask) -> None:
    # A null in the payload sends some backends' encoders down their escaping path (\u00eb for ë).
    tasks = [make_task(payload={"name": "Zoë", "gone": None}), make_task(payload={"name": "Zoe ☃"})]
    await backend.enqueue(tasks)

    assert [t.id for t in (await backend.query(TaskQuery(search="Zoë"))).items] == [tasks[0].id]
    assert [t.id for t in (await backend.query(TaskQuery(search="☃"))).items] == [tasks[1].id]


async def test_search_matches_the_error_of_a_dead_task(backend: Backend, make_task: MakeTask) -> None:
    await backend.enqueue([make_task(payload={"n": 1}), make_task(payload={"n": 2})])
    lease, *_ = await backend.claim(("default",), 1, lease_seconds=30, worker_id="w1")
    dead = outcome.failed(lease.task, "SMTP 550 mailbox unavailable", RetryPolicy(), retryable=False)
    assert await backend.settle([Settlement(lease, dead)]) == [True]

    page = await backend.query(TaskQuery(status=TaskStatus.DEAD, search="mailbox unavailable"))
    assert [t.id for t in page.items] == [lease.task.id]
    assert (await backend.query(TaskQuery(status=TaskStatus.QUEUED, search="mailbox"))).items == []


async def test_search_pages_follow_the_cursor(backend: Backend, make_task: MakeTask) -> None:
    tasks = [make_task(payload={"order": i, "vip": i % 3 == 0}) for i in range(20)]
    await backend.enqueue(tasks)

    ids, pages = await every_page(backend, status=TaskStatus.QUEUED, search='"vip":true', limit=2)
    assert ids == [t.id for t in reversed(tasks) if t.payload["vip"]]
    assert all(len(page.items) <= 2 for page in pages)
    assert pages[-1].complete and not pages[0].complete


async def test_a_scan_bound_cuts_the_page_short_and_the_cursor_continues(backend: Backend,
                                                                        make_task: MakeTask) -> None:
    tasks = [make_task(payload={"order": i, "needle": i < 2}) for i in range(12)]  # the two oldest match
    await backend.enqueue(tasks)

    first = await backend.query(TaskQuery(status=TaskStatus.QUEUED, search='"needle":true', max_scan=4))
    assert first.items == [] and not first.complete
    assert 1 <= first.scanned <= 4

    ids, pages = await every_page(backend, status=TaskStatus.QUEUED, search='"needle":true', max_scan=4)
    assert ids == [tasks[1].id, tasks[0].id]
    assert all(page.scanned <= 4 for page in pages)
    assert sum(page.scanned for page in pages) >= 12


async def test_a_search_counts_what_it_scanned(backend: Backend, make_task: MakeTask) -> None:
    await backend.enqueue([make_task(payload={"k": "x" if i == 3 else "y"}) for i in range(7)])

    page = await backend.query(TaskQuery(status=TaskStatus.QUEUED, search='"k":"x"'))
    assert len(page.items) == 1 and page.complete
    assert page.scanned == 7

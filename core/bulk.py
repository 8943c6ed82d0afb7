"""Acting on every task that matches a filter: cancel waiting and running tasks, replay dead ones.

The guard against a filter that means more than it did when someone looked: the caller first counts
(dry run), then passes that count back as `confirm`, the most tasks it agrees to act on. If more match
now, ConfirmMismatch (HTTP 409) says how many, and nothing is changed; if fewer match (some finished
meanwhile), those are acted on. Matching tasks are collected first (up to `limit`, each listing page
bounded by max_scan, the whole walk by MAX_SCANNED), then acted on; replays go in chunks of
REPLAY_CHUNK with REPLAY_PAUSE seconds between chunks, so a large replay does not arrive as one burst.

Large runs go in chunks of requests (the dashboard, `hexq dead --replay-matching`: limit 500 each), so that each
request fits API Gateway's 29 s. The caller confirms the total once and sends, as each chunk's `confirm`, what is
left of it: a request acts on at most `confirm` tasks, so the run acts on at most the total, and a last chunk
that finds more than what is left gets ConfirmMismatch. A chunk finds what the earlier ones left: replayed tasks
are no longer dead, cancelled ones no longer waiting, and running tasks whose cancellation was already asked for
are passed over (else every chunk would find the same running tasks again).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Final

from hexq.core import search
from hexq.core.errors import ConfirmMismatch, InvalidTransition, TaskNotFound, ValidationError
from hexq.core.model import Page, Priority, Task, TaskQuery, TaskStatus
from hexq.core.ports import Clock, LeaseReader, TaskStore
from hexq.core.services import TaskService

MAX_LIMIT: Final = 10_000  # tasks one request acts on
CHUNK: Final = 500  # tasks one request of a chunked run acts on (in_chunks)
MAX_SCANNED: Final = 100_000  # records one request examines, over all its listing pages
REPLAY_CHUNK: Final = 500
REPLAY_PAUSE: Final = 0.25  # seconds between replay chunks: at most about 2,000 replays a second
_PAGE: Final = 500
CANCELLABLE: Final = (TaskStatus.QUEUED, TaskStatus.SCHEDULED, TaskStatus.RUNNING)


@dataclass(frozen=True, slots=True)
class Filter:
    status: TaskStatus | None = None
    type: str | None = None
    queue: str | None = None
    search: str | None = None
    priority: Priority | None = None
    created_after: float | None = None  # the window as TaskQuery has it: created_after <= created_at < created_before
    created_before: float | None = None


@dataclass(frozen=True, slots=True)
class BulkResult:
    """`matched`: tasks found (at most limit, or confirm + 1 when that many match); `done`: cancelled or replayed;
    `pending`: running tasks whose worker was asked to stop them; `skipped`: those that moved on meanwhile.
    `complete`: the walk reached the end of the filter (else more may match past `scanned` records)."""

    matched: int
    scanned: int
    complete: bool
    done: int = 0
    pending: int = 0
    skipped: int = 0


class BulkService:
    def __init__(self, tasks: TaskService, store: TaskStore, leases: LeaseReader, clock: Clock) -> None:
        self._tasks, self._store, self._leases, self._clock = tasks, store, leases, clock

    async def cancel_matching(self, where: Filter, tenant: str | None, *, limit: int,
                              confirm: int | None) -> BulkResult:
        """Cancel the queued, scheduled and running tasks that match (running ones: their worker is asked to
        stop them). confirm=None is a dry run: count, change nothing."""
        if where.status is not None and where.status not in CANCELLABLE:
            raise ValidationError("only queued, scheduled or running tasks can be cancelled", field="filter.status")
        statuses = [where.status] if where.status else list(CANCELLABLE)
        found, scanned, complete = await self._collect(where, statuses, tenant, limit, confirm, self._not_asked)
        if confirm is None:
            return BulkResult(len(found), scanned, complete)
        done = pending = skipped = 0
        for task in found:
            try:
                cancelled = await self._tasks.cancel(task.id, tenant)
            except (InvalidTransition, TaskNotFound):
                skipped += 1
                continue
            done, pending = (done, pending + 1) if cancelled.status is TaskStatus.RUNNING else (done + 1, pending)
        return BulkResult(len(found), scanned, complete, done, pending, skipped)

    async def replay_matching(self, where: Filter, tenant: str | None, *, limit: int,
                              confirm: int | None) -> BulkResult:
        """Replay the dead tasks that match, throttled (REPLAY_CHUNK, REPLAY_PAUSE). confirm=None: a dry run."""
        if where.status not in (None, TaskStatus.DEAD):
            raise ValidationError("only dead tasks are replayed", field="filter.status")
        found, scanned, complete = await self._collect(where, [TaskStatus.DEAD], tenant, limit, confirm)
        if confirm is None:
            return BulkResult(len(found), scanned, complete)
        done = 0
        for start in range(0, len(found), REPLAY_CHUNK):
            if start:
                await self._clock.sleep(REPLAY_PAUSE)
            done += len(await self._tasks.replay([t.id for t in found[start:start + REPLAY_CHUNK]], tenant))
        return BulkResult(len(found), scanned, complete, done, 0, len(found) - done)

    async def _not_asked(self, task: Task) -> bool:
        """False for a running task whose worker was already asked to stop it (one more read, running tasks only)."""
        if task.status is not TaskStatus.RUNNING:
            return True
        lease = await self._leases.lease(task.id)
        return lease is not None and not lease.cancel_requested

    async def _collect(self, where: Filter, statuses: Sequence[TaskStatus], tenant: str | None, limit: int,
                       confirm: int | None, keep: Callable[[Task], Awaitable[bool]] | None = None,
                       ) -> tuple[list[Task], int, bool]:
        if not 1 <= limit <= MAX_LIMIT:
            raise ValidationError(f"limit must be 1 to {MAX_LIMIT}", field="limit")
        if confirm is not None and confirm < 0:
            raise ValidationError("confirm must be the count a dry run reported", field="confirm")
        wanted = limit if confirm is None else min(limit, confirm + 1)  # one past confirm is enough to refuse
        found: list[Task] = []
        scanned, complete = 0, True
        for status in statuses:
            query = TaskQuery(status=status, type=where.type, queue=where.queue, tenant=tenant, search=where.search,
                              limit=_PAGE, priority=where.priority, created_after=where.created_after,
                              created_before=where.created_before)
            search.check(query)
            page: Page | None = None
            while len(found) < wanted and scanned < MAX_SCANNED:
                page = await self._store.query(replace(query, cursor=page.next_cursor if page else None))
                items = page.items if keep is None else [task for task in page.items if await keep(task)]
                found += items[:wanted - len(found)]
                scanned += page.scanned
                if page.complete:
                    break
            complete = complete and page is not None and page.complete
        if confirm is not None and len(found) > confirm:
            raise ConfirmMismatch(len(found), confirm)
        return found, scanned, complete and len(found) < wanted


async def in_chunks(step: Callable[[int], Awaitable[BulkResult]], total: int,
                    progress: Callable[[int], None] | None = None) -> int:
    """Run a bulk action whose dry run counted `total`, one chunk at a time: step(left) acts on one chunk with
    confirm=left (what is left of the total), so the run acts on at most `total` tasks. Stops when nothing is
    left, a chunk acts on nothing, or the filter is walked to its end; ConfirmMismatch from a chunk (more match
    than is left) propagates, and what was done before it stays done. Returns the tasks acted on; `progress`
    hears the running count after each chunk."""
    acted = 0
    while acted < total:
        result = await step(total - acted)
        chunk = result.done + result.pending + result.skipped
        acted += chunk
        if progress is not None:
            progress(acted)
        if chunk == 0 or result.complete:
            break
    return acted

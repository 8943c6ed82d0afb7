"""What every bench phase shares: the backend, the queues, the work directory, progress, Redis's accounting.

Each phase uses its own queue, `bench.<run>.<phase>` (each drain row `bench.<run>.drain<i>`), so the
drain's workers never see the tasks the enqueue phases left queued, and a report can read its own
tasks back by queue. The baselines use one list (or table) of their own, `bench.<run>.plain`.

With `--queues Q` or `--shards N` (spread.py) the bulk and drain phases use instead the Q queues `bench-<i>.<j>`
or the hot queue `bench`, named alike by every run (a sharded URL's `hot=` must name its queue before the run):
each drain row then reads back its own tasks as the newest succeeded ones of those queues.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from hexq.core.model import Task, TaskQuery, TaskStatus
from hexq.core.services import SubmitRequest
from hexq.functions.bench.options import BenchOptions
from hexq.functions.bench.plain import Plain
from hexq.functions.bench.redisstats import RedisStats, Snapshot, usage
from hexq.functions.bench.spread import HOT_QUEUE, RoundRobin, partition_of, shares, spread_queues
from hexq.functions.bootstrap import Container

READY_TIMEOUT = 30.0  # a child process must be up within this (imports, bootstrap)

Show = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class Queues:
    enqueue: str
    drains: tuple[str, ...]  # one per drain row; the bulk phase fills the first
    latency: str
    serve: str  # the latency phase under `hexq serve`
    plain: str  # the baselines' list or table
    spread: tuple[str, ...] = ()  # --queues / --shards: every drain row's queues, in place of its own

    @classmethod
    def fresh(cls, drains: int = 1, spread: tuple[str, ...] = ()) -> Queues:
        run = f"bench.{uuid.uuid4().hex[:8]}"
        return cls(f"{run}.enqueue", tuple(f"{run}.drain{i}" for i in range(drains)), f"{run}.latency",
                   f"{run}.serve", f"{run}.plain", spread)

    @property
    def drain(self) -> str:
        return self.drains[0]

    def of_drain(self, index: int) -> tuple[str, ...]:
        """The queues drain row `index` submits to (round robin) and its workers serve."""
        return self.spread or (self.drains[index],)

    def all(self) -> tuple[str, ...]:
        return (self.enqueue, *self.drains, *self.spread, self.latency, self.serve)


class Meter:
    """A rich progress bar per phase, or nothing when the output is not a terminal."""

    def __init__(self, console: Console | None) -> None:
        self._progress = Progress(TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(),
                                  TimeElapsedColumn(), console=console, disable=console is None)

    def __enter__(self) -> Meter:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    @contextmanager
    def phase(self, description: str, total: int) -> Iterator[Show]:
        task = self._progress.add_task(description, total=total)
        yield lambda completed: self._progress.update(task, completed=completed)
        self._progress.stop_task(task)


@dataclass
class Bench:
    options: BenchOptions
    container: Container
    url: str  # the backend URL handed to child processes
    workdir: Path  # child logs (and the temporary SQLite file)
    meter: Meter
    plain: Plain | None = None  # the baselines' operations; None: this backend has no baselines
    redis: RedisStats | None = None  # Redis's accounting; None on other backends
    redis_pid: int | None = None  # redis-server's pid when it runs on this machine, for its wait for a core
    queues: Queues = field(init=False)
    notes: list[str] = field(default_factory=list)
    prequeued: int = 0  # drain tasks the bulk phase already enqueued
    plain_queued: int = 0  # bodies the bulk baseline left for the drain baseline
    polls: int = 0  # stats calls made to follow progress (subtracted from Redis's figures)

    def __post_init__(self) -> None:
        o = self.options
        spread = (spread_queues(partition_of(self.url), o.queues) if o.queues > 1 else
                  (HOT_QUEUE,) if o.shards > 1 else ())
        self.queues = Queues.fresh(len(o.workers), spread)

    @cached_property
    def drain_turns(self) -> RoundRobin[SubmitRequest]:
        """The first drain row's noop requests in turn over its queues: the bulk phase takes the first ones,
        and the row's top-up goes on from there."""
        from hexq.functions.bench.enqueue import noop  # enqueue imports this module

        return RoundRobin([noop(q) for q in self.queues.of_drain(0)], self.options.chunk)

    @property
    def local(self) -> bool:
        """memory:// lives in this process only: its workers must run here too."""
        return urlsplit(self.url).scheme == "memory"

    def deadline(self) -> float:
        return time.monotonic() + self.options.timeout

    async def succeeded(self) -> int:
        self.polls += 1
        return (await self.container.tasks.stats()).by_status.get(TaskStatus.SUCCEEDED, 0)

    async def redis_before(self) -> Snapshot | None:
        """Redis's accounting before a phase (None when the backend is not Redis)."""
        return None if self.redis is None else await self.redis.snapshot(self.polls)

    async def redis_since(self, before: Snapshot | None, tasks: int) -> dict[str, Any] | None:
        """What Redis spent per task since `before`, the bench's own polls taken out."""
        if self.redis is None or before is None:
            return None
        after = await self.redis.snapshot(self.polls)
        price = await self.redis.price_of_poll(self.container.tasks.stats, self.polls) if after.polls > before.polls \
            else None
        return usage(before, after, tasks, price)

    async def finished_in(self, queues: tuple[str, ...], expected: int) -> list[Task]:
        """The succeeded tasks of the `expected` handed out round robin over `queues` from the first: the newest of
        each queue (a page may reach older ones: queues shared by drain rows and runs hold theirs too)."""
        if len(queues) == 1 and not self.queues.spread:
            return await self.finished(queues[0], expected)
        return [task for queue, share in zip(queues, shares(expected, len(queues)), strict=True)
                for task in (await self.finished(queue, share))[:share]]

    async def finished(self, queue: str, expected: int) -> list[Task]:
        """The succeeded tasks of `queue`, read back page by page until `expected` are found (newest first,
        so they come before any older ones) or --timeout passes."""
        tasks: list[Task] = []
        cursor: str | None = None
        limit = self.container.tasks.limits.max_page
        deadline = self.deadline()
        while len(tasks) < expected and time.monotonic() < deadline:
            page = await self.container.tasks.query(TaskQuery(status=TaskStatus.SUCCEEDED, queue=queue, limit=limit,
                                                              cursor=cursor))
            tasks += page.items
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        return tasks

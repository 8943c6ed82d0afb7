"""What every bench phase shares: the backend, the queues, the work directory, progress.

Each phase uses its own queue, `bench.<run>.<phase>`, so the drain's workers never see the tasks
the enqueue phases left queued, and a report can read its own tasks back by queue.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from hexq.core.model import Task, TaskQuery, TaskStatus
from hexq.functions.bench.options import BenchOptions
from hexq.functions.bootstrap import Container

READY_TIMEOUT = 30.0  # a child process must be up within this (imports, bootstrap)

Show = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class Queues:
    enqueue: str
    drain: str
    latency: str

    @classmethod
    def fresh(cls) -> Queues:
        run = uuid.uuid4().hex[:8]
        return cls(f"bench.{run}.enqueue", f"bench.{run}.drain", f"bench.{run}.latency")

    def all(self) -> tuple[str, ...]:
        return (self.enqueue, self.drain, self.latency)


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
    queues: Queues = field(default_factory=Queues.fresh)
    notes: list[str] = field(default_factory=list)
    prequeued: int = 0  # drain tasks the bulk phase already enqueued

    @property
    def local(self) -> bool:
        """memory:// lives in this process only: its workers must run here too."""
        return urlsplit(self.url).scheme == "memory"

    def deadline(self) -> float:
        return time.monotonic() + self.options.timeout

    async def succeeded(self) -> int:
        return (await self.container.tasks.stats()).by_status.get(TaskStatus.SUCCEEDED, 0)

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

"""What every experiment shares: the backend, its queues, worker and poller processes, submitting, reading back.

Workers are real `hexq worker` processes started with the bench's process code (functions/bench/procs.py):
each logs to a file in the work directory, is waited for until it prints its banner, and is stopped with
SIGTERM (SIGKILL after a bounded wait). Every experiment run uses queues of its own, `exp.<name>.<id>.<part>`,
so a run never sees another's tasks and reads its own back by queue.

Time. Every latency is a difference of the backend's own stamps (created_at, started_at, finished_at and
each attempt's), so one clock is used per figure on every backend. An open-loop submitter adds one figure
of its own, `late`: how long after its scheduled moment a submit began (this process's monotonic clock).
Latency "from the scheduled time" is late + the backend's started_at - created_at, so a submitter that
falls behind shows as latency, not as a lower offered load (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hexq.core.model import STATES, Task, TaskQuery
from hexq.core.services import SubmitRequest
from hexq.functions.bench import procs
from hexq.functions.bench.context import READY_TIMEOUT, Meter, Show
from hexq.functions.bootstrap import Container
from hexq.functions.experiment.options import Options

TASK_MODULES = "hexq.functions.examples,hexq.functions.experiment.tasks"
POLL = 0.2  # seconds between progress polls (stats)
OUTSTANDING = tuple(s for s in STATES if s != "dead")  # queued, running, scheduled: not finished yet


@dataclass
class Processes:
    """Worker (or poller) processes of one phase."""

    children: list[procs.Child]

    def check(self) -> None:
        procs.check_alive(self.children)

    def kill(self, child: procs.Child) -> None:
        """kill -9: the process gets no chance to release its leases."""
        child.process.send_signal(signal.SIGKILL)

    def pause(self, child: procs.Child) -> None:
        child.process.send_signal(signal.SIGSTOP)

    def resume(self, child: procs.Child) -> None:
        child.process.send_signal(signal.SIGCONT)

    def worker_id(self, child: procs.Child) -> str:
        """The id the worker registers under (functions/worker.py: host:pid), from its banner."""
        return child.first_line.split()[2] if child.first_line.startswith("hexq worker ") else ""


@dataclass
class Sent:
    """One open-loop submit: its index, its scheduled offset from the start, and how late it began."""

    index: int
    scheduled: float
    late: float
    task_id: str


@dataclass
class Lab:
    options: Options
    container: Container
    url: str
    workdir: Path
    meter: Meter
    prefix: str = field(default_factory=lambda: f"exp.{uuid.uuid4().hex[:8]}")
    notes: list[str] = field(default_factory=list)
    started: list[procs.Child] = field(default_factory=list)  # every child, for the logs' fencing count

    def queue(self, part: str) -> str:
        return f"{self.prefix}.{part}"

    @contextlib.asynccontextmanager
    async def workers(self, queues: Sequence[str], count: int, concurrency: int = 1, *, extra: Sequence[str] = (),
                      name: str = "worker") -> AsyncIterator[Processes]:
        """`count` worker processes on `queues`, each ready (banner printed) when the block starts."""
        args = ["hexq.functions.cli", "worker", "--backend", self.url, "--queues", ",".join(queues),
                "--concurrency", str(concurrency), "--tasks", TASK_MODULES, "--log-level", "WARNING", *extra]
        async with self._children([(f"{name}-{i}", args) for i in range(count)]) as children:
            yield children

    @contextlib.asynccontextmanager
    async def poller(self, *extra: str) -> AsyncIterator[Processes]:
        """A `hexq poller`: promotes retries whose backoff is over and takes back expired leases."""
        args = ["hexq.functions.cli", "poller", "--backend", self.url, "--tasks", TASK_MODULES,
                "--log-level", "WARNING", *extra]
        async with self._children([("poller", args)]) as children:
            yield children

    @contextlib.asynccontextmanager
    async def api(self) -> AsyncIterator[tuple[Processes, str]]:
        """hexq's API in a child process (the bench's server: no poller, no workers), and its base URL."""
        args = ["hexq.functions.bench.http_server", self.url, "WARNING"]
        async with self._children([("api", args)]) as children:
            port = children.children[0].first_line.split()[1]
            yield children, f"http://127.0.0.1:{port}"

    @contextlib.asynccontextmanager
    async def _children(self, specs: list[tuple[str, list[str]]]) -> AsyncIterator[Processes]:
        tag = uuid.uuid4().hex[:4]
        children: list[procs.Child] = []
        try:
            for name, args in specs:
                children.append(await procs.start(f"{name}.{tag}", args, self.workdir))
            self.started += children
            await procs.wait_ready(children, READY_TIMEOUT)
            yield Processes(children)
        finally:
            await procs.stop(children, 15.0)

    async def submit_all(self, requests: Sequence[SubmitRequest]) -> list[Task]:
        """Submit in bulk chunks (the backend's largest), in order."""
        size = self.container.tasks.limits.max_bulk
        tasks: list[Task] = []
        for start in range(0, len(requests), size):
            tasks += [s.task for s in await self.container.tasks.submit_bulk(requests[start:start + size])]
        return tasks

    async def open_loop(self, offsets: Sequence[float], make: Callable[[int], SubmitRequest], show: Show,
                        check: Callable[[], None]) -> list[Sent]:
        """Submit request i at start + offsets[i] (seconds, ascending), whatever happened to request i - 1:
        a submitter that falls behind submits at once and records how late it was."""
        sent: list[Sent] = []
        start = time.perf_counter()
        for i, offset in enumerate(offsets):
            delay = start + offset - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            late = max(0.0, time.perf_counter() - start - offset)
            task = (await self.container.tasks.submit(make(i))).task
            sent.append(Sent(i, offset, late, task.id))
            if i % 20 == 0:
                show(i + 1)
                check()
        show(len(sent))
        return sent

    async def outstanding(self, queues: Sequence[str]) -> int:
        """Tasks of `queues` not finished yet (queued, running or waiting for a retry), from the stats."""
        depth = (await self.container.tasks.stats()).depth
        wanted = set(queues)
        return sum(n for (q, _, state), n in depth.items() if q in wanted and state in OUTSTANDING)

    async def wait_done(self, queues: Sequence[str], total: int, within: float, show: Show,
                        check: Callable[[], None] = lambda: None) -> bool:
        """Until no task of `queues` is outstanding (True) or `within` seconds pass (False)."""
        deadline = time.monotonic() + within
        while True:
            left = await self.outstanding(queues)
            show(max(0, total - left))
            if left == 0:
                return True
            if time.monotonic() >= deadline:
                self.notes.append(f"stopped waiting after {within:g} s with {left} task(s) unfinished")
                return False
            check()
            await asyncio.sleep(POLL)

    async def read_back(self, queue: str) -> list[Task]:
        """Every task of `queue`, in any status, page by page."""
        tasks: list[Task] = []
        cursor: str | None = None
        limit = self.container.tasks.limits.max_page
        while True:
            page = await self.container.tasks.query(TaskQuery(queue=queue, limit=limit, cursor=cursor))
            tasks += page.items
            if page.next_cursor is None:
                return tasks
            cursor = page.next_cursor

    def fenced_in_logs(self) -> dict[str, int]:
        """Leases the backend refused because they had moved on, by operation (settle, heartbeat), from the
        `task fenced` event lines of workers that log at INFO (functions/task_events.py)."""
        counts = {"settle": 0, "heartbeat": 0}
        for child in self.started:
            if not child.log.exists():
                continue
            for line in child.log.read_text(errors="replace").splitlines():
                if '"task fenced"' in line:
                    with contextlib.suppress(ValueError, AttributeError):
                        op = json.loads(line).get("op", "")
                        counts[op] = counts.get(op, 0) + 1
        return counts


def poisson(rng: random.Random, rate: float, duration: float) -> list[float]:
    """Arrival offsets of a Poisson process at `rate` per second over `duration` seconds."""
    offsets, t = [], rng.expovariate(rate)
    while t < duration:
        offsets.append(t)
        t += rng.expovariate(rate)
    return offsets


def rss_bytes(pid: int) -> int:
    """The process's resident set size now (VmRSS), 0 when it is gone."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


async def timed(what: Awaitable[Any]) -> float:
    """How long an awaitable took, in seconds."""
    before = time.perf_counter()
    await what
    return time.perf_counter() - before


def first_start(task: Task) -> float | None:
    """When the task's first attempt started: the first failed attempt's stamp, else the task's own."""
    if task.history and task.history[0].started_at is not None:
        return task.history[0].started_at
    return task.started_at


def row(task: Task, **extra: Any) -> dict[str, Any]:
    """One line of tasks.csv: the task's stored timestamps (backend clock, epoch seconds) and what follows."""
    begun = first_start(task)
    return {
        "id": task.id, "queue": task.queue, "type": task.type, "priority": task.priority.name.lower(),
        "status": task.status.value, "attempts": task.attempts, "worker_id": task.worker_id or "",
        "created_at": task.created_at, "first_started_at": begun, "started_at": task.started_at,
        "finished_at": task.finished_at,
        "wait": None if begun is None else round(begun - task.created_at, 6),
        "service": None if task.started_at is None or task.finished_at is None else round(
            task.finished_at - task.started_at, 6),
        **extra,
    }

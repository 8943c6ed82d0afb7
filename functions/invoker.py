"""Invokers: how the poller starts worker invocations (hexq.core.ports.Invoker).

- InProcessInvoker: asyncio tasks on the caller's loop. For memory:// (whose state only one
  process can see) and tests.
- ProcessPoolInvoker: `cap` spawned processes, each running one invocation at a time — `hexq serve`'s
  workers. It plays the part Lambda plays in the serverless setup: each child builds its container
  once ("cold start") and reuses it for every later invocation ("warm"). Each process is a
  single-worker pool of its own, so one that dies hard disturbs no other and is simply replaced.

Both start at most `cap - in_flight` invocations per trigger, so the poller can ask for
ceil(backlog / batch) every tick without piling up work; and at least as many as keep `warm` in
flight, so that while `hexq serve` is idle `warm` invocations wait on the backend and a submitted task
starts at once. `on_finished` tells the caller an invocation ended (`hexq serve` wakes its poller, which
triggers the next: the poller stays what starts invocations).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_for_sentinels
from multiprocessing.process import BaseProcess
from typing import Any

from hexq.core.worker import Report
from hexq.functions import pool_child
from hexq.functions.bootstrap import Container
from hexq.functions.settings import Settings
from hexq.functions.wake import ring
from hexq.functions.worker import default_worker_id, report_fields

log = logging.getLogger("hexq.invoker")


class InProcessInvoker:
    def __init__(self, container: Container, cap: int, *, warm: int = 0,
                 on_finished: Callable[[], None] | None = None) -> None:
        self._container = container
        self._cap = cap
        self._warm = warm
        self._on_finished = on_finished
        self._stop = asyncio.Event()
        self._running: set[asyncio.Task[Report]] = set()
        self._ids = itertools.count(1)

    @property
    def in_flight(self) -> int:
        return len(self._running)

    @property
    def cap(self) -> int:
        return self._cap

    async def trigger(self, n: int) -> int:
        start = 0 if self._stop.is_set() else _to_start(n, self._warm, len(self._running), self._cap)
        for _ in range(start):
            invocation = self._container.invocation(f"{default_worker_id()}:{next(self._ids)}")
            job = asyncio.create_task(invocation.run(self._stop))
            self._running.add(job)
            job.add_done_callback(self._finished)
        return start

    async def shutdown(self) -> None:
        """Stop claiming; running invocations finish or release their tasks after `grace`."""
        self._stop.set()
        await asyncio.gather(*self._running, return_exceptions=True)

    def _finished(self, job: asyncio.Task[Report]) -> None:
        self._running.discard(job)
        if job.cancelled():
            return
        if (exc := job.exception()) is not None:
            log.error("worker invocation failed", exc_info=exc)
            return
        if job.result().claimed:
            log.info("invocation done", extra=report_fields(job.result()))
        _call(self._on_finished)


def _to_start(n: int, warm: int, in_flight: int, cap: int) -> int:
    """Invocations to start: the `n` asked for, or enough to keep `warm` in flight; never past `cap`."""
    return max(0, min(max(n, warm - in_flight), cap - in_flight))


def _call(on_finished: Callable[[], None] | None) -> None:
    # Only after an invocation that ended normally: one that failed or died is started again by the next
    # tick, not at once, so a child that cannot run (a broken setup) does not spin the poller.
    if on_finished is not None:
        on_finished()


class ProcessPoolInvoker:
    """Worker invocations in `cap` spawned processes (spawn, not fork: no inherited loop, locks or
    sockets), one invocation at a time each. Children ignore SIGINT — a Ctrl-C reaches the whole
    process group, and the parent coordinates the shutdown: `shutdown()` tells running invocations to
    stop claiming, waits for them (idle_wait + grace), then stops the processes and kills any that hang.

    Each slot is a ProcessPoolExecutor of its own with max_workers=1, so a child that dies (os._exit,
    a segfault, the OOM killer) takes only its own invocation with it. One shared pool would mark itself
    broken and terminate every other child, releasing their healthy tasks at the cost of an attempt;
    and on Python 3.11 it can miss the death of a child spawned while its manager thread waits, leaving
    that slot counted busy. A one-child pool spawns its child at the first submit, before its manager
    thread starts watching, so a death always completes the slot's future at once (`in_flight` drops);
    the broken pool is replaced at the slot's next use.

    With `bells` (SQLite, which cannot notify) each child also gets a pipe of its own, and `ring()` writes
    to every one: a child waiting for work claims at once (hexq.functions.wake).
    """

    def __init__(self, settings: Settings, cap: int, *, warm: int = 0, bells: bool = False,
                 on_finished: Callable[[], None] | None = None) -> None:
        self._settings = settings
        self._warm = warm
        self._bells = bells
        self._on_finished = on_finished
        self._context = multiprocessing.get_context("spawn")
        self._stopping = threading.Event()
        # The children learn of the shutdown from one byte in this pipe, not from a multiprocessing.Event:
        # a child that dies inside Event.wait() stays counted as a sleeper of its Condition, and the
        # parent's Event.set() then waits forever for it to wake. A pipe write waits for no reader.
        self._stop_reader, self._stop_writer = self._context.Pipe(duplex=False)
        self._lock = threading.Lock()  # done-callbacks run on the pools' manager threads
        self._slots = [self._new_slot() for _ in range(cap)]  # no process starts before a submit

    @property
    def in_flight(self) -> int:
        with self._lock:
            return sum(slot.job is not None for slot in self._slots)

    @property
    def cap(self) -> int:
        return len(self._slots)

    async def trigger(self, n: int) -> int:
        if self._stopping.is_set():
            return 0
        if n > 0:  # there is a backlog: children waiting for work look now (a write they were not told of)
            self.ring()
        with self._lock:
            free = [slot for slot in self._slots if slot.job is None]
            free = free[:_to_start(n, self._warm, len(self._slots) - len(free), len(self._slots))]
        for slot in free:
            future = self._submit(slot)
            with self._lock:
                slot.job = future
            future.add_done_callback(functools.partial(self._finished, slot))  # at once if already done
        return len(free)

    def ring(self) -> None:
        """Tell the children that work may have arrived (with `bells`; otherwise nothing to do)."""
        with self._lock:
            bells = [slot.bell for slot in self._slots if slot.bell is not None]
        for bell in bells:
            ring(bell)

    def shutdown(self, timeout: float | None = None) -> None:
        """Blocking and bounded: call it from a thread (`asyncio.to_thread`) when a loop is running."""
        if timeout is None:
            timeout = self._settings.idle_wait + self._settings.grace + 5.0
        if not self._stopping.is_set():
            self._stopping.set()
            self._stop_writer.send_bytes(b"stop")  # never read: it keeps the pipe readable for every child
        with self._lock:
            running = [slot.job for slot in self._slots if slot.job is not None]
        for future in running:
            future.cancel()  # only those no child has picked up yet
        deadline = time.monotonic() + timeout
        _wait_all(running, timeout)
        _stop_pools([slot.pool for slot in self._slots], max(1.0, deadline - time.monotonic()))
        self._stop_writer.close()
        self._stop_reader.close()
        for slot in self._slots:
            slot.close_bell()

    def kill(self) -> None:
        """The forced exit (a second signal): kill the children now; their tasks return on lease expiry."""
        for slot in self._slots:
            for process in _processes(slot.pool):
                process.kill()

    def _new_slot(self) -> _Slot:
        child_end, bell = self._context.Pipe(duplex=False) if self._bells else (None, None)
        if bell is not None:
            os.set_blocking(bell.fileno(), False)  # ring() must never wait for a child
        pool = ProcessPoolExecutor(max_workers=1, mp_context=self._context, initializer=pool_child.init,
                                   initargs=(self._settings, self._stop_reader, child_end))
        return _Slot(pool, bell=bell, bell_end=child_end)

    def _submit(self, slot: _Slot) -> Future[dict[str, Any]]:
        if not slot.broken:
            try:
                return slot.pool.submit(pool_child.invocation)
            except BrokenProcessPool:
                log.error("worker process died while idle (%s); starting a new one", _exit_status(slot.pool))
        # Its one process is dead (the pool has reaped it); its tasks, if any, come back when their
        # leases expire. The other slots are untouched.
        slot.pool.shutdown(wait=False)
        fresh = self._new_slot()
        with self._lock:
            slot.close_bell()
            slot.pool, slot.bell, slot.bell_end, slot.broken = fresh.pool, fresh.bell, fresh.bell_end, False
        return slot.pool.submit(pool_child.invocation)

    def _finished(self, slot: _Slot, future: Future[dict[str, Any]]) -> None:
        died = not future.cancelled() and isinstance(future.exception(), BrokenProcessPool)
        if died:
            log.error("worker process died during an invocation (%s); its tasks come back when their leases "
                      "expire, and a new process takes its place", _exit_status(slot.pool))
        with self._lock:
            slot.broken = slot.broken or died
            if slot.job is future:
                slot.job = None
        if future.cancelled() or died:
            return
        if (exc := future.exception()) is not None:
            log.error("worker invocation failed: %s", exc, exc_info=exc)
            return
        if future.result()["claimed"]:
            log.info("invocation done", extra=future.result())
        _call(self._on_finished)


@dataclass(eq=False)
class _Slot:
    """One worker process: a single-worker pool, and the invocation it runs (None: free)."""

    pool: ProcessPoolExecutor
    job: Future[dict[str, Any]] | None = None
    broken: bool = False  # its process died; replace the pool before the next submit
    bell: Connection | None = None  # the parent's end of the child's wake pipe (bells only) ...
    bell_end: Connection | None = None  # ... and the child's, kept open until the slot is replaced

    def close_bell(self) -> None:
        for end in (self.bell, self.bell_end):
            if end is not None:
                end.close()


def _wait_all(futures: list[Future[dict[str, Any]]], timeout: float) -> None:
    _, pending = wait(futures, timeout=timeout)
    if pending:
        log.warning("%d worker invocation(s) did not stop within %.1fs", len(pending), timeout)


def _stop_pools(pools: list[ProcessPoolExecutor], timeout: float) -> None:
    """Shut the pools down without hanging: a child stuck in a handler thread is killed after `timeout`."""
    processes = [process for pool in pools for process in _processes(pool)]
    for pool in pools:
        pool.shutdown(wait=False, cancel_futures=True)
    sentinels: dict[int, BaseProcess] = {p.sentinel: p for p in processes}
    deadline = time.monotonic() + timeout
    while sentinels and (left := deadline - time.monotonic()) > 0:
        for ready in wait_for_sentinels(list(sentinels), timeout=left):
            sentinels.pop(ready, None)  # type: ignore[arg-type]  # sentinels are ints
    for process in sentinels.values():
        log.warning("worker process %s did not exit; killing it", process.pid)
        process.kill()
        process.join(1.0)


def _processes(pool: ProcessPoolExecutor) -> list[BaseProcess]:
    # Python 3.11 has no public way to reach the children (3.14 adds terminate_workers/kill_workers).
    return list((getattr(pool, "_processes", None) or {}).values())


def _exit_status(pool: ProcessPoolExecutor) -> str:
    """'pid 123, killed by SIGSEGV' for a broken pool's child (dead: its sentinel woke the pool)."""
    described = []
    for process in _processes(pool):
        process.join(0.5)  # reaps it: its exit code may not be known yet when the sentinel wakes the pool
        code = process.exitcode
        if code is not None and code < 0:
            with contextlib.suppress(ValueError):
                described.append(f"pid {process.pid}, killed by {signal.Signals(-code).name}")
                continue
        described.append(f"pid {process.pid}, exit code {code if code is not None else 'unknown'}")
    return "; ".join(described) or "no process"

"""Invokers: how the poller starts worker invocations (hexq.core.ports.Invoker).

- InProcessInvoker: asyncio tasks on the caller's loop. For memory:// (whose state only one
  process can see) and tests.
- ProcessPoolInvoker: `cap` spawned processes, each running one invocation at a time — `hexq serve`'s
  workers. It plays the part Lambda plays in the serverless setup: each child builds its container
  once ("cold start") and reuses it for every later invocation ("warm"). Each process is a
  single-worker pool of its own, so one that dies hard disturbs no other and is simply replaced.

Both start at most `cap - in_flight` invocations per trigger, so the poller can ask for
ceil(backlog / batch) every tick without piling up work.
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
from concurrent.futures import Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_for_sentinels
from multiprocessing.process import BaseProcess
from typing import Any

from hexq.core.worker import Report
from hexq.functions.bootstrap import Container, bootstrap
from hexq.functions.logs import configure_logging
from hexq.functions.settings import Settings
from hexq.functions.worker import default_worker_id, report_fields

log = logging.getLogger("hexq.invoker")


class InProcessInvoker:
    def __init__(self, container: Container, cap: int) -> None:
        self._container = container
        self._cap = cap
        self._stop = asyncio.Event()
        self._running: set[asyncio.Task[Report]] = set()
        self._ids = itertools.count(1)

    @property
    def in_flight(self) -> int:
        return len(self._running)

    async def trigger(self, n: int) -> int:
        start = 0 if self._stop.is_set() else max(0, min(n, self._cap - len(self._running)))
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
        elif job.result().claimed:
            log.info("invocation done", extra=report_fields(job.result()))


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
    """

    def __init__(self, settings: Settings, cap: int) -> None:
        self._settings = settings
        self._context = multiprocessing.get_context("spawn")
        self._stopping = threading.Event()
        # The children learn of the shutdown from one byte in this pipe, not from a multiprocessing.Event:
        # a child that dies inside Event.wait() stays counted as a sleeper of its Condition, and the
        # parent's Event.set() then waits forever for it to wake. A pipe write waits for no reader.
        self._stop_reader, self._stop_writer = self._context.Pipe(duplex=False)
        self._lock = threading.Lock()  # done-callbacks run on the pools' manager threads
        self._slots = [_Slot(self._new_pool()) for _ in range(cap)]  # no process starts before a submit

    @property
    def in_flight(self) -> int:
        with self._lock:
            return sum(slot.job is not None for slot in self._slots)

    async def trigger(self, n: int) -> int:
        if self._stopping.is_set():
            return 0
        with self._lock:
            free = [slot for slot in self._slots if slot.job is None][:max(0, n)]
        for slot in free:
            future = self._submit(slot)
            with self._lock:
                slot.job = future
            future.add_done_callback(functools.partial(self._finished, slot))  # at once if already done
        return len(free)

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

    def kill(self) -> None:
        """The forced exit (a second signal): kill the children now; their tasks return on lease expiry."""
        for slot in self._slots:
            for process in _processes(slot.pool):
                process.kill()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=1, mp_context=self._context, initializer=_child_init,
                                   initargs=(self._settings, self._stop_reader))

    def _submit(self, slot: _Slot) -> Future[dict[str, Any]]:
        if not slot.broken:
            try:
                return slot.pool.submit(_child_invocation)
            except BrokenProcessPool:
                log.error("worker process died while idle (%s); starting a new one", _exit_status(slot.pool))
        # Its one process is dead (the pool has reaped it); its tasks, if any, come back when their
        # leases expire. The other slots are untouched.
        slot.pool.shutdown(wait=False)
        slot.pool, slot.broken = self._new_pool(), False
        return slot.pool.submit(_child_invocation)

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
        elif future.result()["claimed"]:
            log.info("invocation done", extra=future.result())


@dataclass(eq=False)
class _Slot:
    """One worker process: a single-worker pool, and the invocation it runs (None: free)."""

    pool: ProcessPoolExecutor
    job: Future[dict[str, Any]] | None = None
    broken: bool = False  # its process died; replace the pool before the next submit


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


# -- the child side -------------------------------------------------------------------------------

@dataclass
class _Child:
    """Per-process state of a pool child: one event loop, and the container built at the first call.

    One persistent loop rather than asyncio.run per call, because adapters may hold connections
    bound to the loop that opened them (redis.asyncio pools do).
    """

    settings: Settings
    stopping: Connection  # readable once the parent shuts down (a byte) or dies (EOF)
    loop: asyncio.AbstractEventLoop
    container: Container | None = None
    stop: asyncio.Event | None = None  # the running invocation's
    busy: bool = False
    orphaned: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


_child: _Child | None = None


def _child_init(settings: Settings, stopping: Connection) -> None:
    global _child
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    configure_logging(settings.log_level)
    _child = _Child(settings, stopping, asyncio.new_event_loop())
    threading.Thread(target=_relay_stop, args=(_child, os.getppid()), name="hexq-stop-relay", daemon=True).start()


def _relay_stop(state: _Child, parent: int) -> None:
    """Wait (in a thread: the loop runs only during an invocation) for the parent's shutdown, then stop
    the running invocation. Keep watching the parent: one killed hard leaves no one to send work or to
    stop the pool, so the child exits too — at once if idle, else once its tasks are released."""
    while not state.stopping.poll(1.0) and os.getppid() == parent:
        pass
    with contextlib.suppress(RuntimeError):  # the loop is already closed: nothing left to stop
        state.loop.call_soon_threadsafe(_stop_running, state)
    while os.getppid() == parent:
        time.sleep(1.0)
    with state.lock:
        state.orphaned = True
        if not state.busy:
            os._exit(0)


def _stop_running(state: _Child) -> None:
    if state.stop is not None:
        state.stop.set()


def _child_invocation() -> dict[str, Any]:
    """Runs in a pool child: one worker invocation; the report comes back as a dict."""
    state = _child
    assert state is not None, "pool child used without _child_init"
    with state.lock:
        state.busy = True
    if state.container is None:
        state.container = bootstrap(state.settings)  # the cold start: once per process
    try:
        return state.loop.run_until_complete(_invoke(state, state.container))
    finally:
        with state.lock:
            state.busy = False
            if state.orphaned:  # its tasks were released; no parent is left to take the report
                os._exit(0)


async def _invoke(state: _Child, container: Container) -> dict[str, Any]:
    stop = state.stop = asyncio.Event()
    if state.stopping.poll():  # picked up after the shutdown began
        stop.set()
    # A SIGTERM sent to the child itself (systemd signals the whole cgroup) stops it the same way,
    # so in-flight tasks are released rather than left to lease expiry.
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    try:
        report = await container.invocation(default_worker_id()).run(stop)
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        state.stop = None
    return report_fields(report)

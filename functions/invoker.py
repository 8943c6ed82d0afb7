"""Invokers: how the poller starts worker invocations (core.ports.Invoker).

- InProcessInvoker: asyncio tasks on the caller's loop. For memory:// (whose state only one
  process can see) and tests.
- ProcessPoolInvoker: a local pool of spawned processes, one invocation per submitted call —
  `hexq serve`'s workers. It plays the part Lambda plays in the serverless setup: each child
  builds its container once ("cold start") and reuses it for every later invocation ("warm").

Both start at most `cap - in_flight` invocations per trigger, so the poller can ask for
ceil(backlog / batch) every tick without piling up work.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from multiprocessing.connection import wait as wait_for_sentinels
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event as ProcessEvent
from typing import Any

from core.worker import Report
from functions.bootstrap import Container, bootstrap
from functions.logs import configure_logging
from functions.settings import Settings
from functions.worker import default_worker_id, report_fields

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
    """Worker invocations in a pool of `cap` spawned processes (spawn, not fork: no inherited loop,
    locks or sockets). Children ignore SIGINT — a Ctrl-C reaches the whole process group, and the
    parent coordinates the shutdown: `shutdown()` tells running invocations to stop claiming, waits
    for them (idle_wait + grace), then stops the pool and kills any child that still hangs.
    """

    def __init__(self, settings: Settings, cap: int) -> None:
        self._settings = settings
        self._cap = cap
        self._context = multiprocessing.get_context("spawn")
        self._stopping = self._context.Event()
        self._lock = threading.Lock()  # done-callbacks run on the pool's manager thread
        self._running: set[Future[dict[str, Any]]] = set()
        self._pool = self._new_pool()

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._running)

    async def trigger(self, n: int) -> int:
        if self._stopping.is_set():
            return 0
        start = max(0, min(n, self._cap - self.in_flight))
        for _ in range(start):
            future = self._submit()
            with self._lock:
                self._running.add(future)
            future.add_done_callback(self._finished)
        return start

    def shutdown(self, timeout: float | None = None) -> None:
        """Blocking and bounded: call it from a thread (`asyncio.to_thread`) when a loop is running."""
        if timeout is None:
            timeout = self._settings.idle_wait + self._settings.grace + 5.0
        self._stopping.set()
        with self._lock:
            running = list(self._running)
        for future in running:
            future.cancel()  # only those no child has picked up yet
        deadline = time.monotonic() + timeout
        _wait_all(running, timeout)
        _stop_pool(self._pool, max(1.0, deadline - time.monotonic()))

    def kill(self) -> None:
        """The forced exit (a second signal): kill the children now; their tasks return on lease expiry."""
        for process in _processes(self._pool):
            process.kill()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=self._cap, mp_context=self._context, initializer=_child_init,
                                   initargs=(self._settings, self._stopping))

    def _submit(self) -> Future[dict[str, Any]]:
        try:
            return self._pool.submit(_child_invocation)
        except BrokenProcessPool:
            # A child died hard (OOM kill, segfault): the pool is unusable. Its tasks come back
            # when their leases expire; start a fresh pool so serving goes on.
            log.error("worker pool broken (a child process died); starting a new one")
            _stop_pool(self._pool, 1.0)
            self._pool = self._new_pool()
            return self._pool.submit(_child_invocation)

    def _finished(self, future: Future[dict[str, Any]]) -> None:
        with self._lock:
            self._running.discard(future)
        if future.cancelled():
            return
        if (exc := future.exception()) is not None:
            log.error("worker invocation failed: %s", exc, exc_info=exc)
        elif future.result()["claimed"]:
            log.info("invocation done", extra=future.result())


def _wait_all(futures: list[Future[dict[str, Any]]], timeout: float) -> None:
    _, pending = wait(futures, timeout=timeout)
    if pending:
        log.warning("%d worker invocation(s) did not stop within %.1fs", len(pending), timeout)


def _stop_pool(pool: ProcessPoolExecutor, timeout: float) -> None:
    """Shut the pool down without hanging: a child stuck in a handler thread is killed after `timeout`."""
    processes = _processes(pool)
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


# -- the child side -------------------------------------------------------------------------------

@dataclass
class _Child:
    """Per-process state of a pool child: one event loop, and the container built at the first call.

    One persistent loop rather than asyncio.run per call, because adapters may hold connections
    bound to the loop that opened them (redis.asyncio pools do).
    """

    settings: Settings
    stopping: ProcessEvent
    loop: asyncio.AbstractEventLoop
    container: Container | None = None
    stop: asyncio.Event | None = None  # the running invocation's
    busy: bool = False
    orphaned: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


_child: _Child | None = None


def _child_init(settings: Settings, stopping: ProcessEvent) -> None:
    global _child
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    configure_logging(settings.log_level)
    _child = _Child(settings, stopping, asyncio.new_event_loop())
    threading.Thread(target=_relay_stop, args=(_child, os.getppid()), name="hexq-stop-relay", daemon=True).start()


def _relay_stop(state: _Child, parent: int) -> None:
    """Wait (in a thread: a cross-process Event has no async wait) for the parent's shutdown — or its
    death: a parent killed hard leaves no one to send work or to stop the pool, so the child exits."""
    while not state.stopping.wait(1.0):
        if os.getppid() != parent:
            with state.lock:
                state.orphaned = True
                if not state.busy:
                    os._exit(0)
            break
    with contextlib.suppress(RuntimeError):  # the loop is already closed: nothing left to stop
        state.loop.call_soon_threadsafe(_stop_running, state)


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
    if state.stopping.is_set():  # picked up after the shutdown began
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

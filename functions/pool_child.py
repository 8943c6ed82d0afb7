"""The child side of hexq.functions.invoker.ProcessPoolInvoker: one `hexq serve` worker process.

`init` runs once when the process starts (the pool's initializer); `invocation` runs one worker
invocation each time the pool is handed one, on a loop and a container that live as long as the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from hexq.core.ports import Broker
from hexq.functions.bootstrap import Container, bootstrap
from hexq.functions.logs import configure_logging
from hexq.functions.settings import Settings
from hexq.functions.wake import WokenBroker
from hexq.functions.worker import default_worker_id, report_fields


@dataclass
class _Child:
    """Per-process state of a pool child: one event loop, and the container built at the first call.

    One persistent loop rather than asyncio.run per call, because adapters may hold connections
    bound to the loop that opened them (redis.asyncio pools do).
    """

    settings: Settings
    stopping: Connection  # readable once the parent shuts down (a byte) or dies (EOF)
    bell: Connection | None  # rung by the parent after a write, on a backend that cannot notify (SQLite)
    loop: asyncio.AbstractEventLoop
    container: Container | None = None
    broker: Broker | None = None  # what invocations claim through: the backend's own unless there is a bell
    stop: asyncio.Event | None = None  # the running invocation's
    busy: bool = False
    orphaned: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


_child: _Child | None = None


def init(settings: Settings, stopping: Connection, bell: Connection | None) -> None:
    global _child
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    configure_logging(settings.log_level)
    _child = _Child(settings, stopping, bell, asyncio.new_event_loop())
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


def invocation() -> dict[str, Any]:
    """Runs in a pool child: one worker invocation; the report comes back as a dict."""
    state = _child
    assert state is not None, "pool child used without init"
    with state.lock:
        state.busy = True
    if state.container is None:
        # The cold start, once per process; a pool child runs tasks, so it tells of their events.
        state.container = bootstrap(state.settings, serving=True)
        if state.bell is not None:
            state.broker = WokenBroker(state.container.backend, state.bell)
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
        report = await container.invocation(default_worker_id(), broker=state.broker).run(stop)
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        state.stop = None
    return report_fields(report)

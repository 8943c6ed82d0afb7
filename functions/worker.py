"""`hexq worker`: worker invocations back to back, for the lowest latency.

An idle invocation blocks in claim for `idle_wait`, returns, and the loop starts the next one,
so a task submitted at any moment is picked up by a blocked claim, not by a sleep timer (on SQLite,
which cannot notify another process, the claim polls every 5 ms growing to 50 ms).
A worker serves every queue a loaded task type declares, plus `default`, unless HEXQ_QUEUES (--queues)
names them; at start-up it logs them, and warns about queues with waiting tasks that it does not serve.
The first SIGTERM/SIGINT sets `stop`: no more claims; in-flight tasks get `grace` seconds and
are then released back to the queue (hexq.core.worker does that). A second signal exits at once;
whatever was still running is recovered by the poller when its lease expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, replace

from hexq.core.errors import BackendUnavailable
from hexq.core.worker import Report
from hexq.functions.bootstrap import Container

log = logging.getLogger("hexq.worker")
_signals_log = logging.getLogger("hexq.signals")

_KEEP_REPORTS = 100  # an endless loop returns only its latest reports, so a long-lived worker does not grow


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


async def run_worker(container: Container, stop: asyncio.Event, *, worker_id: str | None = None,
                     max_invocations: int | None = None, signals: bool = True) -> list[Report]:
    """Run invocations until `stop` is set (or `max_invocations` have run); return their reports."""
    worker_id = worker_id or default_worker_id()
    container = serving(container)
    reports: deque[Report] = deque(maxlen=max_invocations or _KEEP_REPORTS)
    done = 0
    await announce(container, worker_id)
    with stop_on_signals(stop, enabled=signals):
        while not stop.is_set() and (max_invocations is None or done < max_invocations):
            report = await container.invocation(worker_id).run(stop)
            done += 1
            reports.append(report)
            if report.claimed:
                log.info("invocation done", extra=report_fields(report))
    return list(reports)


def serving(container: Container) -> Container:
    """The container with the queues its workers serve filled in: HEXQ_QUEUES if given, else `default` and
    every queue a loaded task type declares (Settings.serving)."""
    return replace(container, settings=container.settings.serving(container.registry))


async def announce(container: Container, worker_id: str | None = None) -> list[str]:
    """Log the queues served; warn about each queue that has queued tasks but is not served. Returns those."""
    settings = container.settings
    served = settings.queues
    log.info("serving queues %s", ",".join(served), extra={"worker_id": worker_id, "queues": list(served)})
    try:
        queued = (await container.tasks.stats()).queued
    except BackendUnavailable as exc:  # workers outlive outages; the check is only advice
        log.warning("could not check for unserved queues: %s", exc)
        return []
    unserved = sorted(q for q, levels in queued.items() if q not in served and sum(levels.values()) > 0)
    why = (f"HEXQ_QUEUES (--queues) names only {','.join(served)}" if settings.queues_given else
           "no task type in HEXQ_TASKS declares it; load the module that does, or name it in HEXQ_QUEUES")
    for queue in unserved:
        log.warning("queue %s has %d queued task(s) that this worker does not serve: %s", queue,
                    sum(queued[queue].values()), why, extra={"worker_id": worker_id, "queue": queue})
    return unserved


@contextlib.contextmanager
def stop_on_signals(stop: asyncio.Event, *, enabled: bool = True,
                    on_force: Callable[[], None] | None = None) -> Iterator[None]:
    """While inside: the first SIGTERM/SIGINT sets `stop`, a second one calls `on_force` (e.g. kill child
    processes) and exits the process at once.

    Only the main thread can own signal handlers; elsewhere (or with enabled=False) this does nothing.
    """
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _on_signal, stop, sig, on_force)
    try:
        yield
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def _on_signal(stop: asyncio.Event, sig: signal.Signals, on_force: Callable[[], None] | None) -> None:
    if not stop.is_set():
        _signals_log.info("%s: stopping; in-flight tasks get their grace period, then go back to the queue", sig.name)
        stop.set()
        return
    _signals_log.warning("%s again: exiting now; unfinished tasks are retried when their leases expire", sig.name)
    if on_force is not None:
        on_force()
    sys.stderr.flush()
    os._exit(128 + sig)


def report_fields(report: Report) -> dict[str, object]:
    """A report as log `extra` fields (also what a pool child sends back to its parent)."""
    return asdict(report)

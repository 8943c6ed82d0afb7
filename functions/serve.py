"""`hexq serve`: the API, the poller and the workers in one command — the embedded setup.

uvicorn serves `create_app(container)` on the same event loop as the poller; the poller starts
worker invocations in a process pool sized by the backlog (ceil(backlog / batch), at most
`workers`), and the pool keeps `warm` of them waiting on the backend while idle. With memory:// the
invocations run in-process instead, since no other process can see that backend. SIGTERM/SIGINT stop
the server and the poller, then the pool: in-flight tasks get `grace` seconds and are then released
back to the queue.

A submit is met at once (hexq.functions.wake): the write wakes the poller, which starts more invocations
if there is room, and on SQLite rings the pool's processes so a waiting claim looks now; an invocation
that ends wakes the poller too, which starts the next warm one. The workers serve every queue a loaded
task type declares, plus `default`, unless HEXQ_QUEUES narrows them.

The server runs on uvloop's event loop with httptools' HTTP parser when they are installed (they are
dependencies of hexq; the asyncio loop and h11 remain the fallback), and logs requests only when
HEXQ_ACCESS_LOG (--access-log) says so: a log line per request costs more than the rest of a submit.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import ipaddress
import logging
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import uvicorn

from hexq.core.clock import SystemClock
from hexq.core.errors import ConfigurationError
from hexq.functions.bootstrap import Container, bootstrap, make_backend
from hexq.functions.invoker import InProcessInvoker, ProcessPoolInvoker
from hexq.functions.poller import run_poller
from hexq.functions.settings import Settings
from hexq.functions.wake import NotifyingBackend
from hexq.functions.worker import announce, stop_on_signals

log = logging.getLogger("hexq.serve")


def server_config(app: Any, settings: Settings) -> uvicorn.Config:
    """uvicorn's settings for the API: httptools when installed, the access log only if asked for."""
    http = "httptools" if importlib.util.find_spec("httptools") is not None else "h11"
    return uvicorn.Config(app, log_config=None, timeout_graceful_shutdown=5, server_header=False, http=http,
                          access_log=settings.access_log)


def check_bind(host: str, insecure: bool, *, keys: bool = False) -> None:
    """Refuse a non-loopback address unless API keys are configured: without them, anyone who reaches the
    port owns the queue."""
    if insecure or keys or is_loopback(host):
        return
    raise ConfigurationError(f"refusing to bind {host!r}: no API keys are configured, so hexq serve only listens on "
                             "loopback (127.0.0.1, ::1, localhost). Configure HEXQ_API_KEYS (see `python -m "
                             "hexq.functions.auth keygen`), or pass --insecure-bind to expose it anyway.")


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return False


async def serve(settings: Settings, *, insecure_bind: bool = False, strict: bool = False) -> int:
    from hexq.functions.redis_check import startup_check

    doorbell = _Doorbell(asyncio.get_running_loop())
    container = _container(settings, doorbell)  # connects lazily: nothing has touched the backend yet
    try:
        check_bind(settings.host, insecure_bind, keys=bool(container.keys))  # a bad key stops serve before it binds
        await startup_check(settings.backend_url, strict=strict)  # Redis: warn (or, --strict, refuse) when unsafe
        with _bound_socket(settings.host, settings.port) as sock:
            port = sock.getsockname()[1]
            print(f"hexq serving on http://{_url_host(settings.host)}:{port} (backend {settings.backend_url}, "
                  f"{settings.workers} workers, queues {','.join(container.settings.queues)})\n"
                  f"hexq dashboard at http://{_url_host(settings.host)}:{port}/", flush=True)
            await announce(container)
            await _run(container, sock, doorbell)
    finally:
        await container.backend.close()
    return 0


async def serve_api(settings: Settings, *, insecure_bind: bool = False) -> int:
    """`hexq api`: the HTTP API alone, with the loopback rule of `hexq serve`; the poller and the workers run
    as their own commands (`hexq poller`, `hexq worker`), here or elsewhere."""
    from hexq.functions.api import create_app

    container = bootstrap(settings, serving=True)
    try:
        check_bind(settings.host, insecure_bind, keys=bool(container.keys))
        with _bound_socket(settings.host, settings.port) as sock:
            print(f"hexq api on http://{_url_host(settings.host)}:{sock.getsockname()[1]} "
                  f"(backend {settings.backend_url})", flush=True)
            server = _Server(server_config(create_app(container), container.settings))
            stop = asyncio.Event()
            with stop_on_signals(stop):
                serving = asyncio.create_task(server.serve(sockets=[sock]))
                stopped = asyncio.create_task(stop.wait())
                await asyncio.wait({serving, stopped}, return_when=asyncio.FIRST_COMPLETED)
                stop.set()
                server.should_exit = True
                await asyncio.gather(serving, stopped, return_exceptions=True)
    finally:
        await container.backend.close()
    return 0


def _container(settings: Settings, doorbell: _Doorbell) -> Container:
    backend = NotifyingBackend(make_backend(settings.backend_url, SystemClock(), settings.weights), doorbell.on_write)
    return bootstrap(settings, backend=backend, serving=True)


async def _run(container: Container, sock: socket.socket, doorbell: _Doorbell) -> None:
    from hexq.functions.api import create_app  # the API pulls in Starlette; the worker commands need none of it

    server = _Server(server_config(create_app(container), container.settings))
    stop = asyncio.Event()
    invoker = doorbell.invoker = _invoker(container, doorbell)
    with stop_on_signals(stop, on_force=invoker.kill if isinstance(invoker, ProcessPoolInvoker) else None):
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        polling = asyncio.create_task(run_poller(container, stop, invoker, signals=False, wake=doorbell.poller))
        stopped = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({serving, polling, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            log.info("shutting down")
            stop.set()
            server.should_exit = True
            await asyncio.gather(serving, polling, stopped, return_exceptions=True)
            if isinstance(invoker, InProcessInvoker):
                await invoker.shutdown()
            else:
                await asyncio.to_thread(invoker.shutdown)
        for task in (serving, polling):
            if not task.cancelled() and (exc := task.exception()) is not None:
                raise exc


def _invoker(container: Container, doorbell: _Doorbell) -> InProcessInvoker | ProcessPoolInvoker:
    settings = container.settings
    scheme = urlsplit(settings.backend_url).scheme
    if scheme == "memory":
        return InProcessInvoker(container, settings.workers, warm=settings.warm_invocations,
                                on_finished=doorbell.on_finished)
    # Only SQLite needs the bells: on Redis a waiting claim blocks on the server and wakes by itself.
    return ProcessPoolInvoker(settings, settings.workers, warm=settings.warm_invocations, bells=scheme == "sqlite",
                              on_finished=doorbell.on_finished)


class _Doorbell:
    """What a write in the serve process, or the end of an invocation, sets off."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.poller = asyncio.Event()  # wakes the poller between ticks
        self.invoker: InProcessInvoker | ProcessPoolInvoker | None = None
        self._loop = loop

    def on_write(self) -> None:
        """A task may be claimable: waiting pool processes look now (SQLite), and the poller starts more
        invocations if the pool has room (at the cap there is nothing to start, so it is left alone)."""
        invoker = self.invoker
        if isinstance(invoker, ProcessPoolInvoker):
            invoker.ring()
        if invoker is not None and invoker.in_flight < invoker.cap:
            self.poller.set()

    def on_finished(self) -> None:
        """An invocation ended (called from the pool's threads): the poller starts the next warm one."""
        with contextlib.suppress(RuntimeError):  # the loop is closed: serve has ended
            self._loop.call_soon_threadsafe(self.poller.set)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: `serve` owns the signals and stops every part in order
    (uvicorn's handler would also re-raise the signal after shutdown, killing the process with it)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.contextmanager
def _bound_socket(host: str, port: int) -> Iterator[socket.socket]:
    """Bind before anything starts, so a taken port is a clear error rather than uvicorn's sys.exit."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets that say so, and without it
    # every keep-alive response waits ~40 ms on Nagle + delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise ConfigurationError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    with sock:
        yield sock


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host

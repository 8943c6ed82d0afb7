"""`hexq serve`: the API, the poller and the workers in one command — the embedded setup.

uvicorn serves `create_app(container)` on the same event loop as the poller; the poller starts
worker invocations in a process pool sized by the backlog (ceil(backlog / batch), at most
`workers`). With memory:// the invocations run in-process instead, since no other process can
see that backend. SIGTERM/SIGINT stop the server and the poller, then the pool: in-flight tasks
get `grace` seconds and are then released back to the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import uvicorn

from hexq.core.errors import ConfigurationError
from hexq.functions.bootstrap import Container, bootstrap
from hexq.functions.invoker import InProcessInvoker, ProcessPoolInvoker
from hexq.functions.poller import run_poller
from hexq.functions.settings import Settings
from hexq.functions.worker import stop_on_signals

log = logging.getLogger("hexq.serve")


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
    from hexq.functions.auth import load_keys  # a bad key entry stops serve here, before anything binds
    from hexq.functions.redis_check import startup_check

    check_bind(settings.host, insecure_bind, keys=bool(load_keys(settings)))
    await startup_check(settings.backend_url, strict=strict)  # Redis: warn (or, --strict, refuse) when unsafe
    container = bootstrap(settings)
    try:
        with _bound_socket(settings.host, settings.port) as sock:
            port = sock.getsockname()[1]
            print(f"hexq serving on http://{_url_host(settings.host)}:{port} "
                  f"(backend {settings.backend_url}, {settings.workers} workers)", flush=True)
            await _run(container, sock)
    finally:
        await container.backend.close()
    return 0


async def _run(container: Container, sock: socket.socket) -> None:
    from hexq.functions.api import create_app  # the API pulls in Starlette; the worker commands need none of it

    settings = container.settings
    server = _Server(uvicorn.Config(create_app(container), log_config=None, timeout_graceful_shutdown=5,
                                    server_header=False))
    stop = asyncio.Event()
    local = urlsplit(settings.backend_url).scheme == "memory"
    invoker = InProcessInvoker(container, settings.workers) if local else ProcessPoolInvoker(settings,
                                                                                             settings.workers)
    with stop_on_signals(stop, on_force=invoker.kill if isinstance(invoker, ProcessPoolInvoker) else None):
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        polling = asyncio.create_task(run_poller(container, stop, invoker, signals=False))
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

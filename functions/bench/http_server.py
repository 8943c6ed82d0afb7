"""An HTTP server for the bench's HTTP phases: `python -m hexq.functions.bench.http_server URL [LEVEL [PLAIN]]`.

Without PLAIN it serves hexq's API as `hexq serve` does: the same create_app, uvicorn options and
logging (LEVEL, INFO unless the bench's --log-level says otherwise, so per-request access logging
costs here what it costs there), but no poller and no workers, so submitted tasks stay queued.
With PLAIN it serves the baseline instead: a bare Starlette app whose POST /v1/tasks does one
backend write (hexq.functions.bench.plain: LPUSH or INSERT into PLAIN) and answers 202, under the
same uvicorn config, event loop and HTTP implementation, without an access log.

Either binds a free 127.0.0.1 port, prints `port <n> loop <loop> http <protocol>` once it listens, and
stops cleanly on SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hexq.functions.bench.plain import Plain, open_plain
from hexq.functions.logs import configure_logging


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: SIGTERM here sets should_exit and main() returns normally
    (so a cProfile wrapper still writes its file, and the backend is closed)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if sockets:
            loop = type(asyncio.get_running_loop()).__module__.split(".")[0]  # asyncio or uvloop
            http = getattr(self.config, "http_protocol_class", type(None)).__name__
            print(f"port {sockets[0].getsockname()[1]} loop {loop} http {http}", flush=True)


def uvicorn_config(app: Any) -> uvicorn.Config:
    """functions/serve.py's own options (httptools, no access log unless HEXQ_ACCESS_LOG asks), for the
    baseline as for hexq: both are served as `hexq serve` serves the API."""
    from hexq.functions.serve import server_config
    from hexq.functions.settings import Settings

    return server_config(app, Settings.from_env())


def plain_app(plain: Plain) -> Starlette:
    async def submit(request: Request) -> Response:
        await plain.push(await request.body())
        return Response(b'{"id":"baseline"}', status_code=202, media_type="application/json")

    async def healthz(request: Request) -> Response:
        return Response(b'{"ok":true}', media_type="application/json")

    return Starlette(routes=[Route("/v1/tasks", submit, methods=["POST"]), Route("/healthz", healthz)])


@contextlib.asynccontextmanager
async def _app(url: str, level: str, plain_name: str | None) -> AsyncIterator[Any]:
    """The app to serve, closing its backend afterwards."""
    if plain_name is not None:
        plain = open_plain(url, plain_name)
        if plain is None:
            raise SystemExit(f"no baseline for {url}")
        configure_logging("WARNING")
        try:
            yield plain_app(plain)
        finally:
            await plain.close(drop=False)
        return
    from hexq.functions.api import create_app
    from hexq.functions.bootstrap import bootstrap
    from hexq.functions.settings import Settings

    settings = Settings.from_env().override(backend_url=url, task_modules=("hexq.functions.examples",),
                                            log_level=level)
    configure_logging(settings.log_level)
    container = bootstrap(settings, serving=True)  # as hexq serve's API
    try:
        yield create_app(container)
    finally:
        await container.backend.close()


async def serve(url: str, level: str = "INFO", plain_name: str | None = None) -> None:
    # IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that say so (see functions/serve.py).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.bind(("127.0.0.1", 0))
        async with _app(url, level, plain_name) as app:
            server = _Server(uvicorn_config(app))
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, lambda: setattr(server, "should_exit", True))
            await server.serve(sockets=[sock])
    finally:
        sock.close()


if __name__ == "__main__":
    from hexq.functions.eventloop import run  # uvloop, as `hexq serve` runs on

    run(serve(*sys.argv[1:4]))

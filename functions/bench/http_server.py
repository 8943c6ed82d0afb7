"""The API under uvicorn for the HTTP enqueue phase: `python -m hexq.functions.bench.http_server URL`.

Only the API — no poller, no workers (unlike `hexq serve`), so submitted tasks stay queued. It
binds a free 127.0.0.1 port, prints `port <n>` once it listens, and stops cleanly on SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
from collections.abc import Iterator

import uvicorn

from hexq.functions.api import create_app
from hexq.functions.bootstrap import bootstrap
from hexq.functions.logs import configure_logging
from hexq.functions.settings import Settings


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: SIGTERM here sets should_exit and main() returns normally
    (so a cProfile wrapper still writes its file, and the backend is closed)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if sockets:
            print(f"port {sockets[0].getsockname()[1]}", flush=True)


async def serve(url: str) -> None:
    settings = Settings.from_env().override(backend_url=url, task_modules=("hexq.functions.examples",),
                                            log_level="WARNING")
    configure_logging(settings.log_level)
    container = bootstrap(settings)
    # IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that say so (see functions/serve.py).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.bind(("127.0.0.1", 0))
        server = _Server(uvicorn.Config(create_app(container), log_config=None, access_log=False,
                                        server_header=False, lifespan="off"))
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, lambda: setattr(server, "should_exit", True))
        await server.serve(sockets=[sock])
    finally:
        sock.close()
        await container.backend.close()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1]))

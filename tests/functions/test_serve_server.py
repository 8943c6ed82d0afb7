"""What `hexq serve` serves with: uvloop's event loop and httptools' parser when installed, and an access
log only when asked for (HEXQ_ACCESS_LOG / --access-log)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
import uvicorn

from hexq.functions.api import create_app
from hexq.functions.bootstrap import Container
from hexq.functions.cli import build_parser
from hexq.functions.eventloop import loop_factory, run
from hexq.functions.serve import server_config
from hexq.functions.settings import Settings


def test_the_access_log_is_off_unless_asked_for() -> None:
    assert Settings().access_log is False
    assert Settings.from_env({"HEXQ_ACCESS_LOG": "true"}).access_log is True
    flags = vars(build_parser().parse_args(["serve", "--access-log"]))
    assert flags["setting:access_log"] is True
    assert vars(build_parser().parse_args(["serve"]))["setting:access_log"] is None  # not given: the env decides


def test_serve_parses_http_with_httptools_when_it_is_installed() -> None:
    pytest.importorskip("httptools")
    config = server_config(object(), Settings())
    assert (config.http, config.access_log) == ("httptools", False)
    assert server_config(object(), Settings(access_log=True)).access_log is True


def test_serve_and_worker_run_on_uvloop_when_it_is_installed() -> None:
    uvloop = pytest.importorskip("uvloop")
    assert loop_factory() is uvloop.new_event_loop

    async def which() -> type[asyncio.AbstractEventLoop]:
        return type(asyncio.get_running_loop())

    assert run(which()) is uvloop.Loop


@contextlib.asynccontextmanager
async def serving(container: Container, settings: Settings) -> AsyncIterator[str]:
    """The API under uvicorn, configured as `hexq serve` configures it, on a free loopback port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(server_config(create_app(container), settings))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(1000):  # uvicorn has no event for it
            if server.started:
                break
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@pytest.mark.parametrize("on", [False, True], ids=["default", "asked for"])
async def test_one_access_log_line_per_request_only_when_asked_for(
        make_container: Callable[..., Container], caplog: pytest.LogCaptureFixture, on: bool) -> None:
    settings = Settings(backend_url="memory://", access_log=on)
    async with serving(make_container(), settings) as url, httpx.AsyncClient(base_url=url) as client:
        with caplog.at_level(logging.INFO, logger="uvicorn.access"):
            assert (await client.post("/v1/tasks", json={"type": "echo"})).status_code == 202
            assert (await client.get("/healthz")).status_code == 200
    lines = [r.getMessage() for r in caplog.records if r.name == "uvicorn.access"]
    assert len(lines) == (2 if on else 0)
    if on:
        assert "POST /v1/tasks" in lines[0] and "202" in lines[0]

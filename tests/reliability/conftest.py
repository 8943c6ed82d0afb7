"""Fixtures for the reliability tests (RELIABILITY.md): a redis-server process per test that the test
may kill -9, restart, SIGSTOP and SIGCONT; hexq processes that are always reaped.

The input-limit/security tests in this directory keep their fixtures in their own modules.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import FAST_ENV, Procs, RedisServer


def _server(tmp_path: Path, *, appendonly: bool) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis", appendonly=appendonly)
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """Its own redis-server: AOF on (everysec), no RDB, noeviction. Skips locally without redis-server,
    fails under CI=true."""
    yield from _server(tmp_path, appendonly=True)


@pytest.fixture
def redis_server_no_aof(tmp_path: Path) -> Iterator[RedisServer]:
    """The same with persistence off (`--appendonly no`, `--save ''`): a restart loses everything (T8)."""
    yield from _server(tmp_path, appendonly=False)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    """Starts `hexq ...` children with FAST_ENV; every one is reaped at teardown."""
    directory = tmp_path / "procs"
    directory.mkdir()
    started = Procs(directory, FAST_ENV)
    try:
        yield started
    finally:
        started.close()

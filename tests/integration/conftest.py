"""Real `hexq` processes for the integration tests. Every one listens on, and is reached at, 127.0.0.1 only."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest
from processes import wait_healthy

# Fast ticks and short idle waits keep the tests quick; a test may override any of them.
FAST_ENV = {"HEXQ_POLL_INTERVAL": "0.2", "HEXQ_IDLE_WAIT": "0.5", "HEXQ_LOG_LEVEL": "INFO"}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Proc:
    """A `python -m hexq.functions.cli ...` child with its stdout and stderr in files under tmp_path."""

    process: subprocess.Popen[bytes]
    out: Path
    err: Path
    _files: list[IO[bytes]] = field(default_factory=list)

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM, then the exit code; fails the test if the process does not exit within `timeout`."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"no exit {timeout}s after SIGTERM; log:\n{self.log()[-4000:]}")

    def log(self) -> str:
        return self.err.read_text(errors="replace")

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        for file in self._files:
            file.close()


@pytest.fixture
def hexq(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    """Start `hexq <argv>` as a real process (cwd=tmp_path); it is killed at teardown if still running."""
    started: list[Proc] = []

    def start(*argv: str, env: dict[str, str] | None = None) -> Proc:
        n = len(started)
        out, err = tmp_path / f"hexq-{n}.out", tmp_path / f"hexq-{n}.err"
        files: list[IO[bytes]] = [out.open("wb"), err.open("wb")]
        environment = {**os.environ, **FAST_ENV, **(env or {})}
        process = subprocess.Popen([sys.executable, "-m", "hexq.functions.cli", *argv], cwd=tmp_path,
                                   env=environment, stdout=files[0], stderr=files[1])
        proc = Proc(process, out, err, files)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.close()


@dataclass
class Served:
    proc: Proc
    url: str
    db: Path


@pytest.fixture
def serve(hexq: Callable[..., Proc], tmp_path: Path) -> Callable[..., Served]:
    """Start `hexq serve` on a free port with a SQLite file in tmp_path; returns once /healthz answers."""

    def start(*argv: str, env: dict[str, str] | None = None, backend: str | None = None) -> Served:
        port = free_port()
        db = tmp_path / "hexq.db"
        proc = hexq("serve", "--port", str(port), "--backend", backend or f"sqlite:///{db}", *argv, env=env)
        url = f"http://127.0.0.1:{port}"
        wait_healthy(proc.process, url, proc.log)
        return Served(proc, url, db)

    return start


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each test once on a SQLite file in tmp_path and once on the session's Redis, flushed before and after."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hexq.db'}"
        return
    import redis_server

    with redis_server.flushed(request.getfixturevalue("redis_url")) as url:
        yield url

"""Helpers for the reliability tests (RELIABILITY.md T3-T13): a redis-server we can kill, real `hexq`
processes, a respawning supervisor, direct access to the backend, and the report line.

Everything listens on 127.0.0.1 only. Ground truth about executions is the ledger file written by the
handlers (tests/integration/ledger_tasks.py, tests/reliability/poison_tasks.py); the checker is
tests/integration/ledger.py (lost / duplicated / unexpected), reused here unchanged.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

import httpx
import pytest
import redis

REPO = Path(__file__).resolve().parents[2]
for _path in (REPO, REPO / "tests" / "integration"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from ledger import FinalTask, Ledger, Verdict, check, percentile, read_ledger  # noqa: E402

from hexq.core.model import Task, TaskQuery, TaskStatus  # noqa: E402
from hexq.core.services import SubmitRequest  # noqa: E402
from hexq.functions.bootstrap import Container, bootstrap  # noqa: E402
from hexq.functions.settings import Settings  # noqa: E402

__all__ = ["FinalTask", "Ledger", "Verdict", "check", "percentile", "read_ledger"]

TASK_MODULES = "hexq.functions.examples,tests.integration.ledger_tasks,tests.reliability.poison_tasks"
# Short timings from configuration, proportional to production values (RELIABILITY.md, harness).
FAST_ENV = {"HEXQ_POLL_INTERVAL": "0.2", "HEXQ_IDLE_WAIT": "0.5", "HEXQ_LOG_LEVEL": "INFO", "HEXQ_LEASE": "2",
            "HEXQ_RATE": "0", "HEXQ_TASKS": TASK_MODULES}
T = TypeVar("T")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Callable[[], bool], what: str, timeout: float, interval: float = 0.05) -> float:
    """Poll until `condition()`; returns the seconds it took, fails the test after `timeout`."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            pytest.fail(f"{what}: not within {timeout:g}s")
        time.sleep(interval)
    return time.monotonic() - started


def require_redis_server() -> str:
    path = shutil.which("redis-server")
    if path is None:
        reason = "redis-server is not on PATH"
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis is required in CI: {reason}")
        pytest.skip(reason)
    return path


# -- a redis-server process we own ----------------------------------------------------------------------
class RedisServer:
    """One redis-server on a free loopback port, data in `directory`; kill9/restart/stop/cont for faults."""

    def __init__(self, directory: Path, *, appendonly: bool = True) -> None:
        self.binary = require_redis_server()
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.appendonly = appendonly
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.stopped = False
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def args(self) -> list[str]:
        return [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
                "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "everysec",
                "--save", "", "--maxmemory-policy", "noeviction", "--daemonize", "no"]

    def start(self, timeout: float = 30.0) -> None:
        self.starts += 1
        with (self.dir / f"redis-{self.starts}.log").open("wb") as log:
            self.process = subprocess.Popen(self.args(), stdout=log, stderr=subprocess.STDOUT)
        self.wait_ready(timeout)

    def spawn(self, *extra: str) -> None:
        """Start on the same port and directory WITHOUT waiting for PONG, with `extra` arguments after
        args() (e.g. the hidden `--key-load-delay` to watch it answer LOADING, T9); wait_ready() later."""
        if self.process is not None and self.process.poll() is None:
            self.kill9()
        self.starts += 1
        with (self.dir / f"redis-{self.starts}.log").open("wb") as log:
            self.process = subprocess.Popen([*self.args(), *extra], stdout=log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 30.0) -> float:
        """Ready means PING answers PONG (a server still LOADING its AOF raises BusyLoadingError)."""
        started = time.monotonic()
        while not self.ping():
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}: {self.log()[-2000:]}")
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"redis-server on {self.port} not ready within {timeout:g}s: {self.log()[-2000:]}")
            time.sleep(0.05)
        return time.monotonic() - started

    def ping(self) -> bool:
        try:
            with redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5, socket_timeout=1.0) as c:
                return c.ping() is True
        except redis.RedisError:
            return False

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1.0, socket_timeout=5.0,
                           decode_responses=True)

    def kill9(self) -> None:
        assert self.process is not None
        self.cont()
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def restart(self, timeout: float = 30.0) -> float:
        """Start again on the same port and directory (so AOF is replayed); returns seconds to PONG."""
        if self.process is not None and self.process.poll() is None:
            self.kill9()
        started = time.monotonic()
        self.start(timeout)
        return time.monotonic() - started

    def stop(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)
        self.stopped = True

    def cont(self) -> None:
        if self.process is not None and self.stopped:
            self.process.send_signal(signal.SIGCONT)
            self.stopped = False

    def log(self) -> str:
        logs = sorted(self.dir.glob("redis-*.log"))
        return logs[-1].read_text(errors="replace") if logs else ""

    def close(self) -> None:
        if self.process is None:
            return
        self.cont()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


# -- hexq processes ----------------------------------------------------------------------------------
@dataclass
class Proc:
    name: str
    process: subprocess.Popen[bytes]
    out: Path
    err: Path
    files: list[IO[bytes]] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def sigterm(self) -> None:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int | None:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def log(self) -> str:
        return self.err.read_text(errors="replace") + self.out.read_text(errors="replace")

    def reap(self) -> None:
        if self.alive():
            self.process.kill()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            pass
        for file in self.files:
            file.close()
        self.files.clear()


class Procs:
    """Starts `python -m hexq.functions.cli <argv>` children; `close()` (in a finally) reaps every one."""

    def __init__(self, directory: Path, base_env: Mapping[str, str]) -> None:
        self.dir = directory
        self.base_env = dict(base_env)
        self.started: list[Proc] = []
        self.lock = threading.Lock()

    def start(self, name: str, *argv: str, env: Mapping[str, str] | None = None) -> Proc:
        with self.lock:
            n = len(self.started)
            out, err = self.dir / f"{name}-{n}.out", self.dir / f"{name}-{n}.err"
            files: list[IO[bytes]] = [out.open("wb"), err.open("wb")]
            inherited = {k: v for k, v in os.environ.items() if not k.startswith("HEXQ_")}
            pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
            environment = {**inherited, "PYTHONPATH": pythonpath, **self.base_env, **(env or {})}
            process = subprocess.Popen([sys.executable, "-m", "hexq.functions.cli", *argv], cwd=self.dir,
                                       env=environment, stdout=files[0], stderr=files[1])
            proc = Proc(name, process, out, err, files)
            self.started.append(proc)
            return proc

    def logs(self, tail: int = 3000) -> str:
        return "\n".join(f"--- {p.name} pid {p.pid} rc {p.process.poll()}\n{p.log()[-tail:]}" for p in self.started)

    def close(self) -> None:
        for proc in self.started:
            proc.sigterm()
        deadline = time.monotonic() + 10
        for proc in self.started:
            proc.wait(max(0.1, deadline - time.monotonic()))
            proc.reap()


class Supervisor:
    """Keeps one process running: respawns it (at most `max_respawns` times) whenever it exits."""

    def __init__(self, spawn: Callable[[], Proc], max_respawns: int) -> None:
        self.spawn = spawn
        self.max_respawns = max_respawns
        self.respawns = 0
        self.current = spawn()
        self.exits: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="supervisor", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(0.05):
            rc = self.current.process.poll()
            if rc is None:
                continue
            self.exits.append(rc)
            if self.respawns >= self.max_respawns:
                return
            self.respawns += 1
            self.current = self.spawn()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


# -- the backend, directly (submitting without an API, reading final states) --------------------------
class Direct:
    """A TaskService on its own event loop, for tests that drive workers without an API process."""

    def __init__(self, backend_url: str) -> None:
        self.loop = asyncio.new_event_loop()
        settings = Settings(backend_url=backend_url, task_modules=tuple(TASK_MODULES.split(",")))
        self.container: Container = bootstrap(settings)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def submit(self, type_: str, payload: dict[str, Any], **options: Any) -> Task:
        return self.run(self.container.tasks.submit(SubmitRequest(type=type_, payload=payload, **options))).task

    def submit_bulk(self, requests: list[SubmitRequest]) -> list[Task]:
        return [s.task for s in self.run(self.container.tasks.submit_bulk(requests))]

    def get(self, task_id: str) -> Task:
        return self.run(self.container.tasks.get(task_id))

    def by_status(self) -> Counter[str]:
        stats = self.run(self.container.tasks.stats())
        return Counter({str(status.value if isinstance(status, TaskStatus) else status): n
                        for status, n in stats.by_status.items()})

    def query(self, status: TaskStatus | None = None) -> list[Task]:
        tasks: list[Task] = []
        cursor = None
        while True:
            page = self.run(self.container.tasks.query(TaskQuery(status=status, limit=500, cursor=cursor)))
            tasks.extend(page.items)
            if page.next_cursor is None:
                return tasks
            cursor = page.next_cursor

    def close(self) -> None:
        try:
            self.run(self.container.backend.close())
        finally:
            self.loop.close()


def final_of(tasks: Iterable[Task]) -> list[FinalTask]:
    return [FinalTask(t.id, int(t.payload["n"]), t.status.value, t.attempts) for t in tasks]


# -- the API, over HTTP --------------------------------------------------------------------------------
@dataclass
class ApiCounts:
    """Every status the API answered this test, and how many requests got no answer."""

    statuses: Counter[int] = field(default_factory=Counter)
    transport_errors: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, response: httpx.Response) -> httpx.Response:
        with self.lock:
            self.statuses[response.status_code] += 1
        return response

    @property
    def api_503(self) -> int:
        with self.lock:
            return self.statuses[503]

    @property
    def api_5xx(self) -> int:
        """5xx answers other than 503: a 503 (backend_unavailable) is the designed answer to an outage."""
        with self.lock:
            return sum(n for code, n in self.statuses.items() if code >= 500 and code != 503)


def api_tasks(client: httpx.Client, counts: ApiCounts, **filters: Any) -> list[dict[str, Any]]:
    tasks: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {**filters, "limit": 500, **({"cursor": cursor} if cursor else {})}
        response = counts.note(client.get("/v1/tasks", params=params))
        response.raise_for_status()
        page = response.json()
        tasks.extend(page["tasks"])
        cursor = page["next_cursor"]
        if not cursor:
            return tasks


# -- the report ----------------------------------------------------------------------------------------
def report(path: Path, test: str, verdict: Verdict | None, *, api: ApiCounts | None, wall_s: float,
           accepted: int | None = None, lost: int | None = None, completed: int | None = None,
           dlq: int | None = None, **extra: Any) -> dict[str, Any]:
    """The reporting-format figures as ONE JSON line (printed, and written to `path`)."""
    figures: dict[str, Any] = {
        "test": test,
        "accepted": accepted if accepted is not None else (verdict.accepted if verdict else 0),
        "completed": completed if completed is not None else (verdict.completed if verdict else 0),
        "lost": lost if lost is not None else (verdict.lost if verdict else 0),
        "duplicated": verdict.duplicated if verdict else 0,
        "duplicated_pct": verdict.duplicated_pct if verdict else 0.0,
        "unexpected": verdict.unexpected if verdict else 0,
        "dlq": dlq if dlq is not None else (verdict.dlq if verdict else 0),
        "api_5xx": api.api_5xx if api else 0,
        "api_503": api.api_503 if api else 0,
        "wall_s": round(wall_s, 3),
    }
    if verdict is not None:
        figures.update({"phantom": verdict.phantom, "overrun": verdict.overrun, "torn": verdict.torn})
    figures.update(extra)
    line = json.dumps(figures)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as file:
        file.write(line + "\n")
    print(line)
    shared = os.environ.get("HEXQ_RELIABILITY_REPORT")  # optional: collect every line of a run in one file
    if shared:
        with open(shared, "a") as file:
            file.write(line + "\n")
    return figures


def assert_passes(figures: Mapping[str, Any], logs: Callable[[], str] = lambda: "") -> None:
    """RELIABILITY.md: a run passes only if lost == 0, unexpected == 0 and api_5xx == 0."""
    problems = [f"{k}={figures[k]}" for k in ("lost", "unexpected", "api_5xx") if figures[k]]
    problems += [f"{k}={figures[k]}" for k in ("phantom", "overrun", "torn") if figures.get(k)]
    if problems:
        pytest.fail(f"{', '.join(problems)}: {json.dumps(figures)}\n{logs()[-6000:]}")

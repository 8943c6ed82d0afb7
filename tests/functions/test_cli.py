"""The `hexq` command, run in-process through `main([...])` against a SQLite file in tmp_path."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from hexq.functions.bootstrap import bootstrap
from hexq.functions.cli import main
from hexq.functions.serve import is_loopback
from hexq.functions.settings import Settings
from hexq.functions.worker import run_worker


@pytest.fixture
def backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path}/hexq.db"
    monkeypatch.setenv("HEXQ_BACKEND", url)
    return url


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def submit(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    code, out, err = run(capsys, "submit", *argv)
    assert code == 0, err
    task: dict[str, Any] = json.loads(out)
    return task


@contextmanager
def worker(url: str) -> Iterator[None]:
    """A `hexq worker` loop on its own thread and event loop, against the same database."""
    ready = threading.Event()
    handles: dict[str, Any] = {}

    async def loop() -> None:
        container = bootstrap(Settings(backend_url=url, idle_wait=0.05, lease_seconds=5))
        handles["loop"], handles["stop"] = asyncio.get_running_loop(), asyncio.Event()
        ready.set()
        try:
            await run_worker(container, handles["stop"], signals=False)
        finally:
            await container.backend.close()

    thread = threading.Thread(target=asyncio.run, args=(loop(),))
    thread.start()
    assert ready.wait(10)
    try:
        yield
    finally:
        handles["loop"].call_soon_threadsafe(handles["stop"].set)
        thread.join(10)
        assert not thread.is_alive()


async def drain(url: str) -> None:
    container = bootstrap(Settings(backend_url=url, idle_wait=0.05))
    try:
        await container.invocation("test-worker").run()
    finally:
        await container.backend.close()


# -- submit / status ---------------------------------------------------------------------------------
def test_submit_prints_the_task_and_status_finds_it(backend: str, capsys: pytest.CaptureFixture[str]) -> None:
    task = submit(capsys, "echo", '{"hi": 1}')
    assert task["type"] == "echo" and task["payload"] == {"hi": 1} and task["status"] == "queued"
    code, out, _ = run(capsys, "status", task["id"])
    assert code == 0 and json.loads(out)["id"] == task["id"]


def test_submit_flags_reach_the_task(backend: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["sleep", '{"seconds": 0.01}', "--priority", "critical", "--delay", "60", "--key", "k-1",
            "--queue", "bulk", "--max-attempts", "7", "--timeout", "9"]
    task = submit(capsys, *argv)
    assert (task["priority"], task["status"], task["queue"]) == ("critical", "scheduled", "bulk")
    assert (task["max_attempts"], task["timeout"], task["idempotency_key"]) == (7, 9.0, "k-1")
    assert submit(capsys, *argv)["id"] == task["id"]  # the idempotency key returns the first task
    code, _, err = run(capsys, "submit", "echo", "--key", "k-1")
    assert code == 2 and "idempotency key 'k-1'" in err


def test_submit_wait_returns_the_finished_task(backend: str, capsys: pytest.CaptureFixture[str]) -> None:
    with worker(backend):
        done = submit(capsys, "checksum", '{"data": "abc", "rounds": 2}', "--wait")
        code, out, _ = run(capsys, "submit", "fail", '{"probability": 1}', "--max-attempts", "1", "--wait")
    assert done["status"] == "succeeded" and len(done["result"]["digest"]) == 64
    assert code == 1 and json.loads(out)["status"] == "dead"


def test_status_of_an_unknown_task_exits_1(backend: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "status", "nope")
    assert (code, out) == (1, "")
    assert err.strip() == "hexq: error: no task 'nope'"


@pytest.mark.parametrize("argv, message", [
    (["submit", "echo", "{bad json"], "not valid JSON"),
    (["submit", "echo", "[1, 2]"], "must be a JSON object"),
    (["submit", "no_such_type"], "unknown task type 'no_such_type'"),
    (["submit", "echo", "--max-attempts", "0"], "max_attempts"),
    (["submit", "echo", "--queue", "bad queue!"], "queue"),
    (["dead", "--limit", "0"], "limit"),
    (["dead", "--replay"], "--replay needs task ids"),
    (["worker", "--concurrency", "0"], "HEXQ_CONCURRENCY must be at least 1"),
])
def test_user_errors_exit_2_with_a_message(backend: str, capsys: pytest.CaptureFixture[str], argv: list[str],
                                           message: str) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert err.startswith("hexq: error: ") and message in err
    assert "Traceback" not in err


@pytest.mark.parametrize("env, message", [
    ({"HEXQ_PORT": "eighty"}, "HEXQ_PORT has value 'eighty'"),
    ({"HEXQ_GRACE": "-1"}, "HEXQ_GRACE must be at least 0"),
    ({"HEXQ_IDLE_WAIT": "0"}, "HEXQ_IDLE_WAIT must be above 0"),
    ({"HEXQ_LOG_LEVEL": "loud"}, "HEXQ_LOG_LEVEL has value 'loud'"),
    ({"HEXQ_TASKS": "no_such_module_here"}, "no_such_module_here"),
])
def test_bad_settings_from_the_environment_exit_2(backend: str, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str], env: dict[str, str],
                                                  message: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code, _, err = run(capsys, "stats")
    assert code == 2 and message in err and "Traceback" not in err


def test_flags_override_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HEXQ_BACKEND", "postgres://nowhere")
    (tmp_path / "my_tasks.py").write_text(
        "from hexq.core.registry import task\n\n@task('cli_test_shout')\ndef shout(p):\n    return p['s'].upper()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    task = submit(capsys, "cli_test_shout", '{"s": "hi"}', "--backend", f"sqlite:///{tmp_path}/x.db",
                  "--tasks", "hexq.functions.examples,my_tasks")
    assert task["type"] == "cli_test_shout"


def test_usage_errors_exit_2(backend: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "submit")
    assert code == 2 and "usage: hexq submit" in err
    code, _, err = run(capsys, "submit", "echo", "--priority", "urgent")
    assert code == 2 and "invalid choice" in err


def test_a_bad_backend_url_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HEXQ_BACKEND", "postgres://localhost/x")
    code, _, err = run(capsys, "stats")
    assert code == 2 and "unsupported scheme 'postgres'" in err
    code, _, err = run(capsys, "stats", "--backend", "sqlite://")
    assert code == 2 and "names no database file" in err


def test_wait_on_memory_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "submit", "echo", "--backend", "memory://", "--wait")
    assert code == 2 and "memory://" in err


# -- stats / dead ------------------------------------------------------------------------------------
def test_stats_table_and_json(backend: str, capsys: pytest.CaptureFixture[str]) -> None:
    submit(capsys, "echo", "--priority", "high")
    submit(capsys, "echo")
    code, out, _ = run(capsys, "stats")
    assert code == 0
    assert "queued" in out and "backlog" in out and "critical" in out
    code, out, _ = run(capsys, "stats", "--json")
    stats = json.loads(out)
    assert code == 0 and stats["backlog"] == 2 and stats["by_status"]["queued"] == 2
    assert stats["queued"]["default"]["high"] == 1 and stats["queued"]["default"]["normal"] == 1


def test_dead_lists_and_replays(backend: str, capsys: pytest.CaptureFixture[str]) -> None:
    first = submit(capsys, "fail", '{"probability": 1}', "--max-attempts", "1")
    second = submit(capsys, "fail", '{"probability": 1}', "--max-attempts", "1")
    asyncio.run(drain(backend))

    code, out, _ = run(capsys, "dead")
    assert code == 0 and first["id"] in out and "failed on purpose" in out
    code, out, _ = run(capsys, "dead", "--json", "--limit", "1")
    page = json.loads(out)
    assert len(page["tasks"]) == 1 and page["next_cursor"] is not None

    code, out, _ = run(capsys, "dead", "--replay", first["id"])
    assert code == 0 and out.startswith("replayed 1 task(s)") and first["id"] in out
    code, out, _ = run(capsys, "status", first["id"])
    assert json.loads(out)["status"] == "queued" and json.loads(out)["attempts"] == 0

    code, out, _ = run(capsys, "dead", "--replay-all")
    assert code == 0 and out.startswith("replayed 1 task(s)") and second["id"] in out
    code, out, _ = run(capsys, "dead")
    assert out.strip() == "no dead tasks"


def test_replaying_a_task_that_is_not_dead_exits_1(backend: str, capsys: pytest.CaptureFixture[str]) -> None:
    queued = submit(capsys, "echo")
    code, out, err = run(capsys, "dead", "--replay", "nope", queued["id"])
    assert code == 1 and out.startswith("replayed 0 task(s)")
    assert f"not replayed (unknown or not dead): nope {queued['id']}" in err


# -- serve's bind check --------------------------------------------------------------------------------
@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.com"])
def test_serve_refuses_a_public_bind(backend: str, capsys: pytest.CaptureFixture[str], host: str) -> None:
    code, out, err = run(capsys, "serve", "--host", host)
    assert code == 2 and out == ""
    assert f"refusing to bind {host!r}" in err and "--insecure-bind" in err


def test_serve_refuses_a_public_bind_from_the_environment(backend: str, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HEXQ_HOST", "0.0.0.0")
    code, _, err = run(capsys, "serve")
    assert code == 2 and "refusing to bind '0.0.0.0'" in err


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("LOCALHOST", True), ("0.0.0.0", False), ("::", False), ("10.0.0.1", False), ("localhost.evil.com", False),
])
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_serve_reports_a_taken_port(backend: str, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        code, _, err = run(capsys, "serve", "--port", str(taken.getsockname()[1]))
    assert code == 2 and "cannot listen on 127.0.0.1:" in err


def test_python_dash_m_runs_the_cli(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "hexq.functions.cli", "--help"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=60, check=False)
    assert done.returncode == 0 and "serve" in done.stdout and "submit" in done.stdout


def test_keygen_prints_a_secret_once_and_an_entry_that_holds_only_its_hash(
        capsys: pytest.CaptureFixture[str]) -> None:
    import hashlib

    assert main(["keygen", "ci", "--tenant", "acme", "--scopes", "submit,read"]) == 0
    out = capsys.readouterr().out.splitlines()
    secret = out[0].rsplit(" ", 1)[1]
    entry = out[1].rsplit(" ", 1)[1]
    assert entry == f"ci:acme:read+submit:sha256={hashlib.sha256(secret.encode()).hexdigest()}"
    assert secret not in entry

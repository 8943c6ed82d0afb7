"""The `hexq` command, run in-process through `main([...])` against a SQLite file in tmp_path."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import hexq
from hexq.functions.bootstrap import bootstrap, load_task_modules
from hexq.functions.cli import build_parser, main
from hexq.functions.serve import is_loopback
from hexq.functions.settings import Settings
from hexq.functions.worker import run_worker


@pytest.fixture(autouse=True)
def restore_sys_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading task modules puts the current directory on sys.path; a test's tmp folder must not stay there."""
    monkeypatch.setattr(sys, "path", [*sys.path])


@pytest.fixture
def backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """HEXQ_BACKEND: a SQLite database that exists (read-only commands refuse a missing one)."""
    url = f"sqlite:///{tmp_path}/hexq.db"
    asyncio.run(create(url))
    monkeypatch.setenv("HEXQ_BACKEND", url)
    return url


async def create(url: str) -> None:
    container = bootstrap(Settings(backend_url=url))
    try:
        await container.tasks.stats()
    finally:
        await container.backend.close()


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


# -- --version and --help ------------------------------------------------------------------------------
COMMON = {"--backend", "--tasks", "--log-level"}
METRICS = {"--metrics-port", "--metrics-host"}
WORKER = {"--queues", "--concurrency", "--lease", "--idle-wait", "--budget", "--grace", "--strict", "--no-task-events"}
BACKPRESSURE = {"--max-backlog", "--max-oldest-age"}  # what takes submits: the API, and the poller's schedules
FLAGS: dict[str, set[str]] = {  # every command and the flags it takes: only those it uses
    "serve": COMMON | WORKER | {"--host", "--port", "--workers", "--insecure-bind", "--poll-interval", "--batch",
                                "--max-invocations", "--retention", "--max-queued-per-tenant", "--tenant-weights",
                                "--body-limit", "--rate", "--burst", "--warm", "--access-log"} | BACKPRESSURE,
    "worker": COMMON | WORKER | METRICS,
    "poller": COMMON | METRICS | {"--lease", "--poll-interval", "--retention", "--max-queued-per-tenant",
                                  "--tenant-weights", "--no-task-events"} | BACKPRESSURE,
    "api": COMMON | {"--host", "--port", "--insecure-bind", "--max-queued-per-tenant", "--tenant-weights",
                     "--body-limit", "--rate", "--burst", "--access-log", "--no-task-events"} | BACKPRESSURE,
    "submit": COMMON | {"--priority", "--delay", "--key", "--queue", "--max-attempts", "--timeout", "--wait"},
    "status": COMMON,
    "list": COMMON | {"--status", "--type", "--queue", "--limit", "--cursor", "--search", "--json", "--priority",
                      "--since", "--until"},
    "cancel": COMMON,
    "stats": COMMON | {"--json"},
    "dead": COMMON | {"--replay", "--replay-all", "--replay-matching", "--yes", "--dry-run", "--type", "--queue",
                      "--limit", "--cursor", "--search", "--json", "--priority", "--since", "--until"},
    "schedules": COMMON | {"--json"},
    "schedules put": COMMON | {"--queue", "--priority", "--disabled"},
    "schedules delete": COMMON,
    "queues": COMMON | {"--json"},
    "queues pause": COMMON,
    "queues resume": COMMON,
    "breakers": COMMON | {"--json"},
    "breakers open": COMMON,
    "breakers close": COMMON,
    "keygen": {"--tenant", "--scopes", "--rate", "--burst"},
    "bench": {"--log-level", "--backend", "-n", "--count", "--workers", "--concurrency", "--rate", "--duration",
              "--timeout", "--connections", "--skip", "--json", "--cold-start", "--metrics-cost",
              "--profile", "--queues", "--shards"},
    "experiment": {"--log-level", "--backend", "--out", "--quick", "--seed", "--repeat", "--timeout", "--json"},
    "migrate": {"--log-level"},
    "migrate copy": {"--from", "--to", "--force", "--json"},
    "migrate status": {"--backend", "--json"},
}


def commands(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    """Every command and action in the parser, e.g. "schedules put"."""
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[f"{prefix}{name}"] = sub
                found.update(commands(sub, f"{prefix}{name} "))
    return found


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "--version") == (0, f"hexq {hexq.__version__}\n", "")


def test_the_flag_table_names_every_command() -> None:
    assert set(commands(build_parser())) == set(FLAGS)


@pytest.mark.parametrize("command", sorted(FLAGS))
def test_every_command_answers_help_with_only_its_flags(capsys: pytest.CaptureFixture[str], command: str) -> None:
    code, out, err = run(capsys, *command.split(), "--help")
    assert (code, err) == (0, "")
    assert out.startswith(f"usage: hexq {command} ")
    flags = {s for a in commands(build_parser())[command]._actions for s in a.option_strings} - {"-h", "--help"}
    assert flags == FLAGS[command]
    assert all(flag in out for flag in flags)


# -- list / cancel -------------------------------------------------------------------------------------
def test_list_filters_pages_and_prints_a_table(backend: str, capsys: pytest.CaptureFixture[str]) -> None:
    first = submit(capsys, "echo", '{"n": 1}')
    second = submit(capsys, "echo", '{"n": 2}', "--queue", "bulk")
    later = submit(capsys, "sleep", '{"seconds": 0}', "--delay", "600")

    code, out, _ = run(capsys, "list")
    assert code == 0 and out.splitlines()[0].split()[:5] == ["id", "type", "queue", "priority", "status"]
    assert all(t["id"] in out for t in (first, second, later)) and "scheduled" in out

    def ids(*argv: str) -> list[str]:
        code, out, err = run(capsys, "list", "--json", *argv)
        assert code == 0, err
        return [t["id"] for t in json.loads(out)["tasks"]]

    assert ids() == [later["id"], second["id"], first["id"]]  # newest first
    assert ids("--status", "queued") == [second["id"], first["id"]]
    assert ids("--type", "sleep") == [later["id"]]
    assert ids("--queue", "bulk") == [second["id"]]
    code, out, _ = run(capsys, "list", "--json", "--limit", "2")
    page = json.loads(out)
    assert [t["id"] for t in page["tasks"]] == [later["id"], second["id"]] and page["next_cursor"]
    assert ids("--limit", "2", "--cursor", page["next_cursor"]) == [first["id"]]
    code, out, _ = run(capsys, "list", "--limit", "2")
    assert out.rstrip().endswith(f"more: --cursor {page['next_cursor']}")


def test_list_of_nothing_and_bad_filters(backend: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "list") == (0, "no tasks\n", "")
    code, _, err = run(capsys, "list", "--status", "sleeping")
    assert code == 2 and "invalid choice: 'sleeping'" in err
    code, _, err = run(capsys, "list", "--limit", "0")
    assert code == 2 and err.startswith("hexq: error: limit must be 1 to")


def test_cancel_cancels_and_exits_1_for_what_it_cannot(backend: str, capsys: pytest.CaptureFixture[str]) -> None:
    queued, scheduled = submit(capsys, "echo"), submit(capsys, "echo", "--delay", "600")
    code, out, err = run(capsys, "cancel", queued["id"], scheduled["id"])
    assert (code, err) == (0, "")
    assert out.splitlines() == ["cancelled 2 task(s)", f"  {queued['id']}", f"  {scheduled['id']}"]
    assert json.loads(run(capsys, "status", queued["id"])[1])["status"] == "cancelled"

    again = submit(capsys, "echo")
    code, out, err = run(capsys, "cancel", "nope", queued["id"], again["id"])
    assert code == 1 and out.splitlines() == ["cancelled 1 task(s)", f"  {again['id']}"]
    assert err.splitlines() == ["hexq: error: no task 'nope'",
                                f"hexq: error: cannot cancel task '{queued['id']}': it is cancelled"]


def test_cancel_of_a_running_task_asks_its_worker_to_stop_it(backend: str,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    task = submit(capsys, "echo")

    async def claim() -> None:
        container = bootstrap(Settings(backend_url=backend))
        try:
            assert len(await container.backend.claim(["default"], 1, lease_seconds=60, worker_id="test")) == 1
        finally:
            await container.backend.close()

    asyncio.run(claim())
    code, out, err = run(capsys, "cancel", task["id"])
    assert (code, err) == (0, "")
    assert out.splitlines() == ["cancelled 0 task(s)", "asked 1 running task(s) to stop; each ends cancelled at its "
                               "worker's next heartbeat", f"  {task['id']}"]


def test_cancel_needs_an_id(backend: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "cancel")
    assert code == 2 and "usage: hexq cancel" in err


# -- schedules -----------------------------------------------------------------------------------------
def test_schedules_put_list_and_delete(backend: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "schedules") == (0, "no schedules\n", "")
    code, out, err = run(capsys, "schedules", "put", "tick", "@every 1m", "echo", '{"tick": true}',
                         "--priority", "high", "--queue", "ticks")
    put = json.loads(out)
    assert (code, err) == (0, "")
    assert (put["name"], put["spec"], put["type"], put["payload"]) == ("tick", "@every 1m", "echo", {"tick": True})
    assert (put["priority"], put["queue"], put["enabled"]) == ("high", "ticks", True)
    assert json.loads(run(capsys, "schedules", "put", "nightly", "0 3 * * *", "echo", "--disabled")[1])[
        "enabled"] is False

    code, out, _ = run(capsys, "schedules")
    assert code == 0 and "tick" in out and "@every 1m" in out and "0 3 * * *" in out
    code, out, _ = run(capsys, "schedules", "--json")
    assert [s["name"] for s in json.loads(out)["schedules"]] == ["nightly", "tick"]

    assert run(capsys, "schedules", "delete", "tick") == (0, "deleted schedule tick\n", "")
    assert run(capsys, "schedules", "delete", "tick") == (1, "", "hexq: error: no schedule 'tick'\n")

    other = f"sqlite:///{tmp_path}/other.db"  # the common flags go before or after the action
    assert run(capsys, "schedules", "--backend", other, "put", "a", "@every 1h", "echo")[0] == 0
    assert run(capsys, "schedules", "put", "b", "@every 1h", "echo", "--backend", other)[0] == 0
    code, out, _ = run(capsys, "schedules", "--json", "--backend", other)
    assert [s["name"] for s in json.loads(out)["schedules"]] == ["a", "b"]


@pytest.mark.parametrize("argv, message", [
    (["bad name!", "@every 1m", "echo"], "name"),
    (["x", "every minute", "echo"], "spec"),
    (["x", "@every 1m", "no_such_type"], "unknown task type 'no_such_type'"),
    (["x", "@every 1m", "echo", "[1]"], "must be a JSON object"),
])
def test_a_bad_schedule_is_a_usage_error(backend: str, capsys: pytest.CaptureFixture[str], argv: list[str],
                                         message: str) -> None:
    code, _, err = run(capsys, "schedules", "put", *argv)
    assert code == 2 and err.startswith("hexq: error: ") and message in err
    assert run(capsys, "schedules") == (0, "no schedules\n", "")


# -- queues --------------------------------------------------------------------------------------------
def test_queues_pause_list_and_resume(backend: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "queues", "pause", "emails") == (0, "paused queue emails\n", "")
    assert run(capsys, "queues", "pause", "emails") == (0, "queue emails was already paused\n", "")
    submit(capsys, "echo", "--queue", "emails")
    submit(capsys, "echo", "--delay", "60")

    code, out, _ = run(capsys, "queues", "--json")
    assert code == 0 and json.loads(out) == {"queues": [
        {"name": "default", "paused": False, "depth": 0, "running": 0, "scheduled": 1, "dead": 0},
        {"name": "emails", "paused": True, "depth": 1, "running": 0, "scheduled": 0, "dead": 0}]}
    code, out, _ = run(capsys, "queues")
    assert code == 0 and [line.split()[:3] for line in out.splitlines()[1:]] == [["default", "active", "0"],
                                                                                 ["emails", "paused", "1"]]
    assert run(capsys, "queues", "resume", "emails") == (0, "resumed queue emails\n", "")
    assert run(capsys, "queues", "resume", "emails") == (0, "queue emails was not paused\n", "")
    assert json.loads(run(capsys, "stats", "--json")[1])["paused"] == []


def test_a_bad_queue_name_is_a_usage_error(backend: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "queues", "pause", "bad name!")

    assert code == 2 and err.startswith("hexq: error: queue must match")
    assert run(capsys, "queues") == (0, "no queues\n", "")


# -- read-only commands never create a database --------------------------------------------------------
@pytest.mark.parametrize("argv", [
    ["status", "x"], ["stats"], ["stats", "--json"], ["dead"], ["dead", "--replay", "x"], ["dead", "--replay-all"],
    ["dead", "--replay-matching", "--yes"],
    ["list"], ["list", "--json"], ["cancel", "x"], ["schedules"], ["schedules", "delete", "x"], ["queues"],
])
def test_read_only_commands_in_an_empty_folder_create_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str],
                                                              argv: list[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HEXQ_BACKEND", raising=False)
    code, out, err = run(capsys, *argv)
    assert (code, out) == (2, "")
    expected = tmp_path.resolve() / "hexq.db"
    assert err == f"hexq: error: no hexq database at {expected}; start `hexq serve` there or pass --backend\n"
    code, _, err = run(capsys, *argv, "--backend", "sqlite:///sub/q.db")
    assert code == 2 and f"no hexq database at {tmp_path.resolve() / 'sub' / 'q.db'};" in err
    assert list(tmp_path.iterdir()) == []


# -- task modules from the current directory -----------------------------------------------------------
SHOUT = "from hexq.core.registry import task\n\n@task('cwd_shout')\ndef shout(p):\n    return p['s'].upper()\n"


def hexq_command() -> str:
    """The installed console script, as a user runs it (its own folder, not the cwd, starts sys.path)."""
    script = Path(sys.executable).with_name("hexq")
    found = str(script) if script.exists() else shutil.which("hexq")
    assert found, "the hexq console script is not installed next to this Python"
    return found


def hexq_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HEXQ_", "PYTHONPATH", "PYTHONSAFEPATH"))}
    return {**env, **extra}


def test_the_hexq_command_imports_task_modules_from_the_current_directory(tmp_path: Path) -> None:
    (tmp_path / "cwd_tasks.py").write_text(SHOUT)
    argv = [hexq_command(), "submit", "cwd_shout", '{"s": "hi"}', "--tasks", "cwd_tasks"]
    done = subprocess.run(argv, cwd=tmp_path, env=hexq_env(), capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["type"] == "cwd_shout"
    done = subprocess.run([hexq_command(), "list", "--json"], cwd=tmp_path, env=hexq_env(HEXQ_TASKS="cwd_tasks"),
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and json.loads(done.stdout)["tasks"][0]["type"] == "cwd_shout"


def test_a_missing_task_module_says_where_it_looked_and_what_to_do(tmp_path: Path) -> None:
    done = subprocess.run([hexq_command(), "submit", "echo", "--tasks", "hexq.functions.examples,not_here_tasks"],
                          cwd=tmp_path, env=hexq_env(), capture_output=True, text=True, timeout=60, check=False)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (f"hexq: error: task module 'not_here_tasks' (HEXQ_TASKS or --tasks) was not found in "
                           f"{tmp_path} (the current directory) or on sys.path: run hexq from the folder that holds "
                           "it, or set PYTHONPATH\n")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name, expected", [
    ("mypkg.tasks", "was not found: there is no package 'mypkg' in"),
    ("tasks.py", "(a file tasks.py is the module tasks)"),
    ("my-tasks", "is not a module name"),
    ("./tasks", "is not a module name"),
])
def test_task_module_names_that_cannot_be_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str], name: str, expected: str) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "submit", "echo", "--tasks", name, "--backend", "memory://")
    assert code == 2 and err.startswith(f"hexq: error: task module {name!r} (HEXQ_TASKS or --tasks) ")
    assert expected in err


@pytest.mark.parametrize("source, line, error", [
    ("import os\nraise RuntimeError('no API token in the environment')\n", 2,
     "RuntimeError: no API token in the environment"),
    ("import os\nimport a_dependency_nobody_installed\n", 2,
     "ModuleNotFoundError: No module named 'a_dependency_nobody_installed'"),
    ("def broken(:\n", 1, "SyntaxError: "),
])
def test_a_task_module_that_raises_shows_the_exception(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str], source: str, line: int,
                                                       error: str) -> None:
    (tmp_path / "raising_tasks.py").write_text(source)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "raising_tasks", raising=False)
    code, out, err = run(capsys, "submit", "echo", "--tasks", "raising_tasks", "--backend", "memory://")
    assert (code, out) == (2, "")
    assert err.startswith(f"hexq: error: task module 'raising_tasks' (HEXQ_TASKS or --tasks) raised while importing "
                          f"at {tmp_path / 'raising_tasks.py'}, line {line}: {error}")
    assert "Traceback" not in err and "was not found" not in err


@pytest.mark.slow
def test_serve_runs_a_task_module_from_the_current_directory_in_its_worker_processes(tmp_path: Path) -> None:
    """The API process and the spawned worker processes of `hexq serve` both import it."""
    (tmp_path / "cwd_tasks.py").write_text(SHOUT)
    env = hexq_env(HEXQ_TASKS="hexq.functions.examples,cwd_tasks", HEXQ_POLL_INTERVAL="0.1")
    server = subprocess.Popen([hexq_command(), "serve", "--port", "0"], cwd=tmp_path, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert server.stdout is not None
        banner = server.stdout.readline()
        assert banner.startswith("hexq serving on"), server.stderr.read() if server.stderr else banner
        done = subprocess.run([hexq_command(), "submit", "cwd_shout", '{"s": "hi"}', "--wait"], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        assert json.loads(done.stdout)["result"] == "HI"
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)
    assert server.returncode == 0


def test_installed_task_modules_leave_sys_path_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A client made inside an application imports the examples: its sys.path must not gain the working folder.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    before = list(sys.path)

    load_task_modules(("hexq.functions.examples",))

    assert sys.path == before
    (tmp_path / "here_tasks.py").write_text("X = 1\n")
    load_task_modules(("here_tasks",))  # only a module that is not found otherwise brings it in
    assert sys.path == [str(tmp_path), *before]


def test_list_search_says_how_much_it_scanned(capsys: pytest.CaptureFixture[str]) -> None:
    mark = os.urandom(4).hex()  # the CLI tests share one database: a text no other test (or run) wrote
    run(capsys, "submit", "echo", f'{{"to": "ann-{mark}"}}')
    run(capsys, "submit", "echo", f'{{"to": "bob-{mark}"}}')

    code, out, _ = run(capsys, "list", "--search", f'"to":"ann-{mark}"')

    assert code == 0 and re.search(r"\n1 match\(es\) in \d+ scanned\n", out)


def test_dead_replay_matching_counts_asks_and_replays_only_the_matches(
        backend: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    ids = [submit(capsys, "fail", json.dumps({"probability": 1, "batch": "b7", "n": n}), "--max-attempts", "1")["id"]
           for n in range(3)]
    other = submit(capsys, "fail", '{"probability": 1, "batch": "b8"}', "--max-attempts", "1")["id"]
    asyncio.run(drain(backend))
    match = ("dead", "--replay-matching", "--search", '"batch":"b7"')

    code, out, _ = run(capsys, *match, "--dry-run")
    assert code == 0 and out.startswith("3 dead task(s) match")
    monkeypatch.setattr(sys, "stdin", io.StringIO("replay 2\n"))
    code, out, err = run(capsys, *match)
    assert code == 1 and "not confirmed" in err
    assert all(json.loads(run(capsys, "status", i)[1])["status"] == "dead" for i in ids)

    monkeypatch.setattr(sys, "stdin", io.StringIO("replay 3\n"))
    code, out, _ = run(capsys, *match)
    assert code == 0 and "replayed 3 of 3" in out
    assert {json.loads(run(capsys, "status", i)[1])["status"] for i in ids} == {"queued"}
    assert json.loads(run(capsys, "status", other)[1])["status"] == "dead"
    code, out, _ = run(capsys, "dead", "--replay-matching", "--yes", "--type", "fail")
    assert code == 0 and "replayed 1 of 1" in out
    assert run(capsys, "dead", "--yes")[0] == 2  # --yes alone means nothing

"""The `hexq` command: serve | worker | poller | submit | status | stats | dead | bench.

Settings come from HEXQ_* environment variables (Settings.from_env); a flag overrides its variable.
submit/status/stats/dead talk to the backend directly — no server needs to be running.
Exit codes: 0 ok, 1 task not found (or `submit --wait` ended other than succeeded), 2 usage or
configuration error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from hexq.core.codec import task_to_dict
from hexq.core.errors import ConfigurationError, QueueError, TaskNotFound, ValidationError
from hexq.core.model import Priority, Task, TaskQuery, TaskStatus
from hexq.core.services import SubmitRequest
from hexq.functions.bench.options import add_arguments as _bench_arguments
from hexq.functions.bootstrap import Container, bootstrap
from hexq.functions.logs import configure_logging
from hexq.functions.settings import Settings, env_name

Command = Callable[[Settings, argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse reports usage errors (2) and --help (0) this way
        return exc.code if isinstance(exc.code, int) else 2
    try:
        overrides = {k.removeprefix(_PREFIX): v for k, v in vars(args).items() if k.startswith(_PREFIX)}
        settings = Settings.from_env().override(**overrides)
        configure_logging(settings.log_level)
        command: Command = args.command
        return command(settings, args)
    except TaskNotFound as exc:
        return _fail(exc, 1)
    except QueueError as exc:
        return _fail(exc, 2)
    except KeyboardInterrupt:
        return 130


# -- long-running commands ------------------------------------------------------------------------
def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from hexq.functions.serve import serve

    return asyncio.run(serve(settings, insecure_bind=args.insecure_bind, strict=args.strict))


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    from hexq.functions.worker import default_worker_id, run_worker

    async def run(container: Container) -> int:
        from hexq.functions.redis_check import startup_check

        await startup_check(settings.backend_url, strict=args.strict)
        worker_id = default_worker_id()
        print(f"hexq worker {worker_id} on {','.join(settings.queues)} (backend {settings.backend_url}, "
              f"concurrency {settings.concurrency})", flush=True)
        await run_worker(container, asyncio.Event(), worker_id=worker_id)
        return 0

    return _with_container(settings, run)


def _poller(settings: Settings, args: argparse.Namespace) -> int:
    from hexq.functions.poller import run_poller

    async def run(container: Container) -> int:
        print(f"hexq poller (backend {settings.backend_url}, every {settings.poll_interval:g}s)", flush=True)
        await run_poller(container, asyncio.Event())
        return 0

    return _with_container(settings, run)


# -- client commands ------------------------------------------------------------------------------
def _submit(settings: Settings, args: argparse.Namespace) -> int:
    local = urlsplit(settings.backend_url).scheme == "memory"
    if local and args.wait:
        raise ConfigurationError("--wait needs a shared backend: memory:// lives only inside this command")
    request = SubmitRequest(type=args.type, payload=_payload(args.payload), priority=Priority.parse(args.priority),
                            queue=args.queue, delay=args.delay, max_attempts=args.max_attempts, timeout=args.timeout,
                            idempotency_key=args.key)

    async def run(container: Container) -> int:
        task = (await container.tasks.submit(request)).task
        if args.wait:
            task = await _wait(container, task)
        _print_json(task_to_dict(task))
        return 0 if not args.wait or task.status is TaskStatus.SUCCEEDED else 1

    return _with_container(settings, run)


def _status(settings: Settings, args: argparse.Namespace) -> int:
    async def run(container: Container) -> int:
        _print_json(task_to_dict(await container.tasks.get(args.id)))
        return 0

    return _with_container(settings, run)


def _stats(settings: Settings, args: argparse.Namespace) -> int:
    from hexq.functions.wire import stats_to_dict

    async def run(container: Container) -> int:
        stats = stats_to_dict(await container.tasks.stats())
        if args.json:
            _print_json(stats)
        else:
            print(_stats_table(stats))
        return 0

    return _with_container(settings, run)


def _dead(settings: Settings, args: argparse.Namespace) -> int:
    async def run(container: Container) -> int:
        if args.replay_all or args.replay is not None:
            return await _replay(container, args.replay, replay_all=args.replay_all)
        page = await container.tasks.query(TaskQuery(status=TaskStatus.DEAD, limit=args.limit))
        if args.json:
            _print_json({"tasks": [task_to_dict(t) for t in page.items], "next_cursor": page.next_cursor})
        else:
            print(_dead_table(page.items))
        return 0

    return _with_container(settings, run)


async def _replay(container: Container, ids: list[str] | None, *, replay_all: bool) -> int:
    if replay_all:
        ids = await _dead_ids(container)
    elif not ids:
        raise ValidationError("--replay needs task ids (or use --replay-all)")
    replayed = await container.tasks.replay(ids)
    print(f"replayed {len(replayed)} task(s)" + "".join(f"\n  {t.id}" for t in replayed))
    moved = {t.id for t in replayed}
    skipped = [i for i in dict.fromkeys(ids) if i not in moved]
    if skipped and not replay_all:  # with --replay-all, only a concurrent replay can cause a skip
        print(f"hexq: not replayed (unknown or not dead): {' '.join(skipped)}", file=sys.stderr)
        return 1
    return 0


def _keygen(settings: Settings, args: argparse.Namespace) -> int:
    from hexq.functions.auth import main as auth_main

    return auth_main(["keygen", *args.rest])


def _bench(settings: Settings, args: argparse.Namespace) -> int:
    from hexq.functions.bench.runner import run_command

    return run_command(settings, args)


# -- helpers --------------------------------------------------------------------------------------
def _with_container(settings: Settings, run: Callable[[Container], Awaitable[int]]) -> int:
    async def body() -> int:
        container = bootstrap(settings)
        try:
            return await run(container)
        finally:
            await container.backend.close()

    return asyncio.run(body())


async def _wait(container: Container, task: Task, interval: float = 0.2) -> Task:
    """Poll until the task is terminal: a CLI client has no push channel to wait on."""
    while not task.is_terminal:
        await asyncio.sleep(interval)
        task = await container.tasks.get(task.id)
    return task


async def _dead_ids(container: Container) -> list[str]:
    """All dead task ids, collected before replaying anything so paging is not disturbed."""
    ids: list[str] = []
    cursor: str | None = None
    limit = container.tasks.limits.max_page
    while True:
        page = await container.tasks.query(TaskQuery(status=TaskStatus.DEAD, limit=limit, cursor=cursor))
        ids.extend(task.id for task in page.items)
        if page.next_cursor is None:
            return ids
        cursor = page.next_cursor


def _payload(raw: str) -> dict[str, Any]:
    try:
        payload = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValidationError(f"the payload argument is not valid JSON ({exc}): {raw!r}") from None
    if not isinstance(payload, dict):
        raise ValidationError(f"the payload must be a JSON object like '{{\"a\": 1}}', not {raw!r}")
    return payload


def _stats_table(stats: dict[str, Any]) -> str:
    rows = [f"{'status':<10} {'count':>8}"]
    rows += [f"{status:<10} {n:>8}" for status, n in stats["by_status"].items()]
    rows.append(f"{'backlog':<10} {stats['backlog']:>8}")
    if stats["queued"]:
        levels = [p.name.lower() for p in Priority]
        rows.append("")
        rows.append(f"{'queue':<16}" + "".join(f"{level:>10}" for level in levels))
        for queue, counts in sorted(stats["queued"].items()):
            rows.append(f"{queue:<16}" + "".join(f"{counts.get(level, 0):>10}" for level in levels))
    return "\n".join(rows)


def _dead_table(tasks: Sequence[Task]) -> str:
    if not tasks:
        return "no dead tasks"
    rows = [f"{'id':<32}  {'type':<16} {'attempts':>8}  error"]
    for task in tasks:
        error = (task.error or "").replace("\n", " ")
        rows.append(f"{task.id:<32}  {task.type:<16} {task.attempts:>8}  {error[:70]}")
    return "\n".join(rows)


def _print_json(value: object) -> None:
    print(json.dumps(value, indent=2))


def _fail(exc: Exception, code: int) -> int:
    print(f"hexq: error: {exc}", file=sys.stderr)
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hexq", description="hexq: a task queue over a pluggable backend.")
    common = argparse.ArgumentParser(add_help=False)
    _setting(common, "--backend", "backend_url", str, "URL", "memory://, sqlite:///hexq.db (default)", "HEXQ_BACKEND")
    _setting(common, "--tasks", "task_modules", _csv, "MODULES", "modules with @task handlers", "HEXQ_TASKS")
    _setting(common, "--log-level", "log_level", str, "LEVEL", "DEBUG, INFO (default), WARNING", "HEXQ_LOG_LEVEL")
    running = argparse.ArgumentParser(add_help=False)  # the knobs of the long-running commands
    _setting(running, "--queues", "queues", _csv, "A,B", "queues workers claim from (default: default)")
    _setting(running, "--concurrency", "concurrency", int, "N", "tasks one invocation runs at once (10)")
    for flag, name, kind, metavar, help in _TUNING:
        _setting(running, flag, name, kind, metavar, help)
    sub = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    def command(name: str, run: Command, help: str, *parents: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common, *parents], help=help, description=help)
        p.set_defaults(command=run)
        return p

    serve = command("serve", _serve, "API + poller + workers in one process (the embedded setup)", running)
    _setting(serve, "--host", "host", str, "HOST", "loopback only unless --insecure-bind (127.0.0.1)")
    _setting(serve, "--port", "port", int, "PORT", "default 8000")
    _setting(serve, "--workers", "workers", int, "N", "worker processes (2)")
    serve.add_argument("--insecure-bind", action="store_true",
                       help="allow a non-loopback --host without API keys (anyone who reaches it owns the queue)")
    worker = command("worker", _worker, "run worker invocations back to back until SIGTERM/SIGINT", running)
    for p in (serve, worker):
        p.add_argument("--strict", action="store_true",
                       help="refuse to start on a Redis without maxmemory-policy noeviction and persistence")
    command("poller", _poller, "promote due tasks, recover expired leases, fire schedules (no workers)", running)

    submit = command("submit", _submit, "submit a task and print it as JSON")
    submit.add_argument("type", help="task type, e.g. echo, sleep, checksum, webhook, fail")
    submit.add_argument("payload", nargs="?", default="{}", metavar="JSON", help="payload object (default {})")
    submit.add_argument("--priority", choices=[p.name.lower() for p in Priority], default="normal")
    submit.add_argument("--delay", type=float, metavar="SECONDS", help="run no earlier than this from now")
    submit.add_argument("--key", metavar="IDEMPOTENCY_KEY", help="resubmitting with the same key returns the task")
    submit.add_argument("--queue", metavar="Q", help="default: the task type's queue")
    submit.add_argument("--max-attempts", type=int, metavar="N")
    submit.add_argument("--timeout", type=float, metavar="S", help="seconds per attempt")
    submit.add_argument("--wait", action="store_true", help="wait until it ends; exit 1 unless it succeeded")

    status = command("status", _status, "print a task as JSON (exit 1 if there is no such task)")
    status.add_argument("id")

    stats = command("stats", _stats, "task counts by status, queued depth by queue and priority")
    stats.add_argument("--json", action="store_true", help="print JSON instead of a table")

    dead = command("dead", _dead, "list dead-lettered tasks, or replay them")
    replay = dead.add_mutually_exclusive_group()
    replay.add_argument("--replay", nargs="*", metavar="ID", help="send these dead tasks back to the queue")
    replay.add_argument("--replay-all", action="store_true", help="send every dead task back to the queue")
    dead.add_argument("--limit", type=int, default=50, metavar="N", help="how many to list (default 50)")
    dead.add_argument("--json", action="store_true", help="print JSON instead of a table")

    keygen = sub.add_parser("keygen", help="make an API key: prints the secret once and its HEXQ_API_KEYS entry",
                            add_help=False)
    keygen.add_argument("rest", nargs=argparse.REMAINDER)
    keygen.set_defaults(command=_keygen)

    # Not `command(...)`: the common --tasks (task modules) would clash with bench's --tasks N.
    bench = sub.add_parser("bench", help="measure enqueue, drain and latency for a backend",
                           description="measure enqueue, drain and latency for a backend")
    bench.set_defaults(command=_bench)
    _bench_arguments(bench)
    return parser


# flag, Settings field, type, metavar, help; each also has its HEXQ_* variable.
_TUNING: tuple[tuple[str, str, Callable[[str], Any], str, str], ...] = (
    ("--lease", "lease_seconds", float, "S", "a claimed task's lease; heartbeats renew it (30)"),
    ("--idle-wait", "idle_wait", float, "S", "an idle invocation blocks in claim this long, then ends (1)"),
    ("--budget", "budget", float, "S", "an invocation stops claiming after this long (60)"),
    ("--grace", "grace", float, "S", "on stop, in-flight tasks get this long, then go back to the queue (10)"),
    ("--poll-interval", "poll_interval", float, "S", "seconds between poller ticks (0.5)"),
    ("--batch", "batch", int, "N", "backlog per worker invocation the poller starts (10)"),
    ("--max-invocations", "max_invocations", int, "N", "cap on invocations at once (0: --workers)"),
    ("--body-limit", "body_limit", int, "BYTES", "largest request body the API accepts (262144)"),
    ("--rate", "rate", str, "RATE", "requests per API key, e.g. 100/s; 0 = no limit (100/s)"),
    ("--burst", "burst", int, "N", "requests an API key may send at once (200)"),
    ("--max-queued-per-tenant", "max_queued_per_tenant", int, "N", "waiting tasks per tenant; 0 = unlimited (0)"),
    ("--retention", "retention", float, "S", "finished tasks are purged after this (604800 = 7 days)"),
)
_PREFIX = "setting:"


def _setting(parser: argparse.ArgumentParser, flag: str, name: str, kind: Callable[[str], Any], metavar: str,
             help: str, env: str | None = None) -> None:
    """A flag that overrides Settings.<name>; its dest is prefixed so no other option can collide with it."""
    env = env or env_name(name)
    parser.add_argument(flag, dest=_PREFIX + name, type=kind, metavar=metavar, help=f"{help} [{env}]")


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


if __name__ == "__main__":
    sys.exit(main())

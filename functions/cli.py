"""The `hexq` command line: parse it, read the settings, run the command (functions/commands.py).

Settings come from HEXQ_* environment variables (Settings.from_env); a flag overrides its variable,
and each command takes only the flags it uses.
Exit codes: 0 ok; 1 a task or schedule not found, `submit --wait` ended other than succeeded, or
`cancel` / `dead --replay` left some ids as they were, or `dead --replay-matching` was not confirmed or found more
than confirmed; 2 usage or configuration error; 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from hexq import __version__
from hexq.core.errors import QueueError, ScheduleNotFound, TaskNotFound
from hexq.core.model import Priority, TaskStatus
from hexq.functions import breaker_commands, commands
from hexq.functions.auth import KEYGEN_HELP, add_keygen_arguments
from hexq.functions.bench.options import add_arguments as add_bench_arguments
from hexq.functions.experiment.options import add_arguments as add_experiment_arguments
from hexq.functions.logs import configure_logging
from hexq.functions.migrate import add_arguments as add_migrate_arguments
from hexq.functions.settings import Settings, env_name

Command = Callable[[Settings, argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse reports usage errors (2), --help and --version (0) this way
        return exc.code if isinstance(exc.code, int) else 2
    try:
        overrides = {k.removeprefix(_PREFIX): v for k, v in vars(args).items() if k.startswith(_PREFIX)}
        settings = Settings.from_env().override(**overrides)
        configure_logging(settings.log_level)
        command: Command = args.command
        return command(settings, args)
    except (TaskNotFound, ScheduleNotFound) as exc:
        return _fail(exc, 1)
    except QueueError as exc:
        return _fail(exc, 2)
    except KeyboardInterrupt:
        return 130


def _fail(exc: Exception, code: int) -> int:
    print(f"hexq: error: {exc}", file=sys.stderr)
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hexq", description="hexq: a task queue over a pluggable backend.")
    parser.add_argument("--version", action="version", version=f"hexq {__version__}")
    sub = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")
    add = _adder(sub)

    serve = add("serve", commands.serve, "API + poller + workers in one process (the embedded setup)", _SERVE)
    serve.add_argument("--insecure-bind", action="store_true",
                       help="allow a non-loopback --host without API keys (anyone who reaches it owns the queue)")
    worker = add("worker", commands.worker, "run worker invocations back to back until SIGTERM/SIGINT",
                 (*_WORKER, *_METRICS))
    for p in (serve, worker):
        p.add_argument("--strict", action="store_true",
                       help="refuse to start on a Redis without maxmemory-policy noeviction and persistence")
    add("poller", commands.poller, "promote due tasks, recover expired leases, fire schedules (no workers)", _POLLER)
    api = add("api", commands.api, "the HTTP API alone (no poller, no workers): run those as hexq poller and "
              "hexq worker", _API)
    api.add_argument("--insecure-bind", action="store_true",
                     help="allow a non-loopback --host without API keys (anyone who reaches it owns the queue)")

    _submit(add("submit", commands.submit, "submit a task and print it as JSON"))
    add("status", commands.status, "print a task as JSON (exit 1 if there is no such task)").add_argument("id")
    _list(add("list", commands.list_tasks, "list tasks, newest first"))
    cancel = add("cancel", commands.cancel, "cancel tasks: waiting ones at once, running ones at their worker's next "
                 "heartbeat (exit 1 if any is unknown or finished)")
    cancel.add_argument("ids", nargs="+", metavar="ID")
    stats = add("stats", commands.stats, "task counts by status, queued depth by queue and priority")
    stats.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _dead(add("dead", commands.dead, "list dead-lettered tasks, or replay them"))
    schedules = add("schedules", commands.schedules, "list the recurring schedules, or put or delete one")
    _schedules(schedules)
    # After the actions exist (their usage starts with this command's): argparse would print `ACTION ...` as required.
    schedules.usage = "%(prog)s [-h] [--backend URL] [--tasks MODULES] [--log-level LEVEL] [--json] [ACTION ...]"

    queues = add("queues", commands.queues, "list the queues (queued, running, scheduled, dead; paused or not), "
                 "or pause or resume one")
    _queues(queues)
    queues.usage = "%(prog)s [-h] [--backend URL] [--tasks MODULES] [--log-level LEVEL] [--json] [ACTION ...]"

    breakers = add("breakers", breaker_commands.breakers, breaker_commands.HELP)
    breaker_commands.add_arguments(breakers, _adder)
    breakers.usage = "%(prog)s [-h] [--backend URL] [--tasks MODULES] [--log-level LEVEL] [--json] [ACTION ...]"

    add_keygen_arguments(add("keygen", commands.keygen, KEYGEN_HELP, ()))
    # migrate reads and writes only where its own --from and --to say (not HEXQ_BACKEND)
    add_migrate_arguments(add("migrate", commands.migrate, "move a stopped Redis deployment to another Redis (one "
                              "node to a cluster): copy its keys, then check them", ("--log-level",)))
    # bench writes only where its own --backend says (not HEXQ_BACKEND), and runs only noop tasks.
    add_bench_arguments(add("bench", commands.bench, "measure enqueue, drain and latency for a backend",
                            ("--log-level",)))
    # like bench: writes only where its own --backend says, into queues of its own
    add_experiment_arguments(add("experiment", commands.experiment, "run an experiment (priority, scaling, "
                                 "retries, ...) against real workers and write its data, plots and report; "
                                 "`hexq experiment list` lists them", ("--log-level",)))
    return parser


def _adder(sub: Any, *, nested: bool = False) -> Callable[..., argparse.ArgumentParser]:
    """add(name, run, help, flags=_COMMON): a subcommand with the settings flags it uses.

    `nested`: under a command that has the flags itself; the default SUPPRESS keeps a flag given before the
    action (`hexq schedules --backend X put ...`) from being reset by the action's own default."""
    def add(name: str, run: Command, help: str, flags: Sequence[str] = _COMMON) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=help, description=help)
        p.set_defaults(command=run)
        for flag in flags:
            _setting(p, flag, nested=nested)
        return p

    return add


def _submit(p: argparse.ArgumentParser) -> None:
    p.add_argument("type", help="task type, e.g. echo, sleep, checksum, webhook, fail")
    p.add_argument("payload", nargs="?", default="{}", metavar="JSON", help="payload object (default {})")
    p.add_argument("--priority", choices=_PRIORITIES, default="normal")
    p.add_argument("--delay", type=float, metavar="SECONDS", help="run no earlier than this from now")
    p.add_argument("--key", metavar="IDEMPOTENCY_KEY", help="resubmitting with the same key returns the task")
    p.add_argument("--queue", metavar="Q", help="default: the task type's queue")
    p.add_argument("--max-attempts", type=int, metavar="N")
    p.add_argument("--timeout", type=float, metavar="S", help="seconds per attempt")
    p.add_argument("--wait", action="store_true", help="wait until it ends; exit 1 unless it succeeded")


def _list(p: argparse.ArgumentParser) -> None:
    p.add_argument("--status", choices=[s.value for s in TaskStatus], help="only tasks in this status")
    _page(p)


def _dead(p: argparse.ArgumentParser) -> None:
    replay = p.add_mutually_exclusive_group()
    replay.add_argument("--replay", nargs="*", metavar="ID", help="send these dead tasks back to the queue")
    replay.add_argument("--replay-all", action="store_true", help="send every dead task back to the queue")
    replay.add_argument("--replay-matching", action="store_true",
                        help="replay every dead task that matches --type, --queue, --search, --priority, --since and "
                        "--until (at most 10,000 a "
                        "run): counts them, asks you to type the count (or --yes), then replays 500 at a time")
    p.add_argument("--yes", action="store_true", help="with --replay-matching: no typed confirmation")
    p.add_argument("--dry-run", action="store_true", help="with --replay-matching: only count the matches")
    _page(p)


def _page(p: argparse.ArgumentParser) -> None:
    p.add_argument("--type", metavar="T", help="only tasks of this type")
    p.add_argument("--queue", metavar="Q", help="only tasks of this queue")
    p.add_argument("--limit", type=int, default=50, metavar="N", help="how many to list (default 50)")
    p.add_argument("--cursor", metavar="C", help="the page after the one that printed this cursor")
    p.add_argument("--search", metavar="TEXT", help="only tasks whose payload (compact JSON) or error holds TEXT; "
                   "a page examines at most 10,000 tasks")
    p.add_argument("--priority", choices=_PRIORITIES, help="only tasks of this priority")
    p.add_argument("--since", metavar="TIME", help="only tasks created at or after TIME: epoch seconds, ISO-8601 "
                   "(UTC without an offset) or a duration ago (90s, 15m, 2h, 7d)")
    p.add_argument("--until", metavar="TIME", help="only tasks created before TIME (as --since)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _schedules(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add = _adder(p.add_subparsers(title="actions", metavar="ACTION"), nested=True)  # no action: list them
    put = add("put", commands.schedule_put, "create or replace a schedule and print it as JSON")
    put.add_argument("name", help="the schedule's name ([A-Za-z0-9_.:-])")
    put.add_argument("spec", help="'*/5 * * * *' (cron, UTC) or '@every 1m'")
    put.add_argument("type", help="the task type it submits")
    put.add_argument("payload", nargs="?", default="{}", metavar="JSON", help="payload object (default {})")
    put.add_argument("--queue", default="default", metavar="Q", help="default: default")
    put.add_argument("--priority", choices=_PRIORITIES, default="normal")
    put.add_argument("--disabled", action="store_true", help="store it without firing it")
    add("delete", commands.schedule_delete, "delete a schedule (exit 1 if there is none)").add_argument("name")


def _queues(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add = _adder(p.add_subparsers(title="actions", metavar="ACTION"), nested=True)  # no action: list them
    add("pause", commands.queue_pause, "stop workers claiming the queue's tasks (submits are still accepted); "
        "running tasks finish").add_argument("name", help="the queue's name ([A-Za-z0-9_.:-])")
    add("resume", commands.queue_resume, "make a paused queue's tasks claimable again at once").add_argument(
        "name", help="the queue's name")


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


_PRIORITIES = [p.name.lower() for p in Priority]
_PREFIX = "setting:"
# flag: Settings field, type, metavar, help. Each also has its HEXQ_* variable, shown in the help.
_SETTINGS: dict[str, tuple[str, Callable[[str], Any], str, str]] = {
    "--backend": ("backend_url", str, "URL", "sqlite:///hexq.db (default), redis://host:6379/0, memory://, aws://..."),
    "--tasks": ("task_modules", _csv, "MODULES",
                "comma-separated modules with @task handlers, importable from here (hexq.functions.examples)"),
    "--log-level": ("log_level", str, "LEVEL", "DEBUG, INFO (default), WARNING"),
    "--host": ("host", str, "HOST", "loopback only unless --insecure-bind (127.0.0.1)"),
    "--port": ("port", int, "PORT", "default 8000"),
    "--workers": ("workers", int, "N", "worker processes (2)"),
    "--queues": ("queues", _csv, "A,B", "queues workers claim from (default: every queue a loaded task type "
                 "declares, plus default)"),
    "--warm": ("warm", int, "N", "invocations kept waiting on the backend while idle (1; 0: none)"),
    "--concurrency": ("concurrency", int, "N", "tasks one invocation runs at once (10)"),
    "--lease": ("lease_seconds", float, "S", "a claimed task's lease; heartbeats renew it (30)"),
    "--idle-wait": ("idle_wait", float, "S", "an idle invocation blocks in claim this long, then ends (1)"),
    "--budget": ("budget", float, "S", "an invocation stops claiming after this long (60)"),
    "--grace": ("grace", float, "S", "on stop, in-flight tasks get this long, then go back to the queue (10)"),
    "--poll-interval": ("poll_interval", float, "S", "seconds between poller ticks (0.5)"),
    "--batch": ("batch", int, "N", "backlog per worker invocation the poller starts (10)"),
    "--max-invocations": ("max_invocations", int, "N", "cap on invocations at once (0: --workers)"),
    "--body-limit": ("body_limit", int, "BYTES", "largest request body the API accepts (262144)"),
    "--rate": ("rate", str, "RATE", "requests per API key, e.g. 100/s; 0 = no limit (100/s)"),
    "--burst": ("burst", int, "N", "requests an API key may send at once (200)"),
    "--max-queued-per-tenant": ("max_queued_per_tenant", int, "N", "waiting tasks per tenant; 0 = unlimited (0)"),
    "--max-backlog": ("max_backlog", str, "CAPS", "queued tasks per queue past which a submit gets 503 overloaded: "
                      "N for every queue and/or queue=N, e.g. 10000,emails=500; 0 or empty: no cap"),
    "--max-oldest-age": ("max_oldest_age", str, "CAPS", "seconds the oldest queued task may wait before a submit "
                         "gets 503 overloaded, per queue like --max-backlog"),
    "--tenant-weights": ("tenant_weights", str, "T=W,..", "fair-queue weights of tenants, e.g. acme=3 (others: 1)"),
    "--retention": ("retention", float, "S", "finished tasks are purged after this (604800 = 7 days)"),
    "--access-log": ("access_log", bool, "", "log one line per HTTP request (off by default: it is costly)"),
    "--no-task-events": ("task_events", bool, "", "no JSON log line per task event (submitted, started, "
                         "succeeded, retried, dead, ...)"),
    "--metrics-port": ("metrics_port", int, "PORT", "serve this process's Prometheus metrics on it (0: none)"),
    "--metrics-host": ("metrics_host", str, "HOST", "where --metrics-port listens (127.0.0.1)"),
}
_COMMON = ("--backend", "--tasks", "--log-level")
# What each long-running command reads: a worker claims and runs; a poller without an invoker promotes,
# recovers leases (--lease), fires schedules (a submit, so the tenant cap applies) and purges.
_METRICS = ("--metrics-port", "--metrics-host")
_WORKER = (*_COMMON, "--queues", "--concurrency", "--lease", "--idle-wait", "--budget", "--grace", "--no-task-events")
_POLLER = (*_COMMON, "--lease", "--poll-interval", "--retention", "--max-queued-per-tenant", "--tenant-weights",
           "--no-task-events", *_METRICS, "--max-backlog", "--max-oldest-age")
_API = (*_COMMON, "--host", "--port", "--max-queued-per-tenant", "--tenant-weights", "--body-limit", "--rate",
        "--burst", "--access-log", "--no-task-events", "--max-backlog", "--max-oldest-age")
_SERVE = (*_WORKER, "--host", "--port", "--workers", "--poll-interval", "--batch", "--max-invocations", "--retention",
          "--max-queued-per-tenant", "--tenant-weights", "--body-limit", "--rate", "--burst", "--warm", "--access-log",
          "--max-backlog", "--max-oldest-age")


def _setting(parser: argparse.ArgumentParser, flag: str, *, nested: bool = False) -> None:
    """A flag that overrides Settings.<name>; its dest is prefixed so no other option can collide with it."""
    name, kind, metavar, help = _SETTINGS[flag]
    default = argparse.SUPPRESS if nested else None
    if kind is bool:  # a switch: given, it turns the setting on (--no-...: off)
        on = not flag.startswith("--no-")
        parser.add_argument(flag, dest=_PREFIX + name, action="store_const", const=on, default=default,
                            help=f"{help} [{env_name(name)}={'true' if on else 'off'}]")
        return
    parser.add_argument(flag, dest=_PREFIX + name, type=kind, metavar=metavar, default=default,
                        help=f"{help} [{env_name(name)}]")


if __name__ == "__main__":
    sys.exit(main())

"""What each `hexq` command does; functions/cli.py parses the command line and calls one of these.

Each takes the Settings (environment plus flags) and the parsed arguments and returns the exit code.
The client commands talk to the backend directly, through the container's services: no server needs
to be running. Those that act only on what is stored (listing, status, cancel, replay, delete) refuse
a SQLite file that does not exist instead of creating an empty one somewhere unexpected.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

from hexq.core.errors import ConfigurationError, InvalidTransition, TaskNotFound, ValidationError
from hexq.core.model import Priority, Task, TaskQuery, TaskStatus
from hexq.core.services import SubmitRequest
from hexq.functions import filters
from hexq.functions.bootstrap import Container, bootstrap, require_database
from hexq.functions.settings import Settings


# -- long-running commands ------------------------------------------------------------------------
def serve(settings: Settings, args: argparse.Namespace) -> int:
    from hexq.functions.eventloop import run
    from hexq.functions.metrics.multiprocess import shared_directory
    from hexq.functions.serve import serve as run_serve

    # The API and the pool's processes count into shared files, merged by /metrics: chosen before anything
    # imports prometheus_client (the container below, the pool's processes).
    with shared_directory(settings.metrics_on):
        return run(run_serve(settings, insecure_bind=args.insecure_bind, strict=args.strict))


def api(settings: Settings, args: argparse.Namespace) -> int:
    from hexq.functions.eventloop import run
    from hexq.functions.serve import serve_api

    return run(serve_api(settings, insecure_bind=args.insecure_bind))


def worker(settings: Settings, args: argparse.Namespace) -> int:
    from hexq.functions.worker import default_worker_id, run_worker, stop_on_signals

    async def run(container: Container) -> int:
        from hexq.functions.redis_check import startup_check

        await startup_check(settings.backend_url, strict=args.strict)
        worker_id, stop = default_worker_id(), asyncio.Event()
        with stop_on_signals(stop), _own_metrics(container):  # before the banner: whoever waits may SIGTERM
            print(f"hexq worker {worker_id} on {','.join(container.settings.queues)} (backend {settings.backend_url}, "
                  f"concurrency {settings.concurrency})", flush=True)
            await run_worker(container, stop, worker_id=worker_id, signals=False)
        return 0

    return _with_container(settings, run, fast=True, serving=True)


def poller(settings: Settings, args: argparse.Namespace) -> int:
    from hexq.functions.poller import run_poller
    from hexq.functions.worker import stop_on_signals

    async def run(container: Container) -> int:
        stop = asyncio.Event()
        with stop_on_signals(stop), _own_metrics(container):
            print(f"hexq poller (backend {settings.backend_url}, every {settings.poll_interval:g}s)", flush=True)
            await run_poller(container, stop, signals=False)
        return 0

    return _with_container(settings, run, serving=True)


# -- tasks ----------------------------------------------------------------------------------------
def submit(settings: Settings, args: argparse.Namespace) -> int:
    local = urlsplit(settings.backend_url).scheme == "memory"
    if local and args.wait:
        raise ConfigurationError("--wait needs a shared backend: memory:// lives only inside this command")
    request = SubmitRequest(type=args.type, payload=_payload(args.payload), priority=Priority.parse(args.priority),
                            queue=args.queue, delay=args.delay, max_attempts=args.max_attempts, timeout=args.timeout,
                            idempotency_key=args.key)

    async def run(container: Container) -> int:
        from hexq.functions.wire import task_view

        task = (await container.tasks.submit(request)).task
        if args.wait:
            task = await _wait(container, task)
        _print_json(task_view(task))
        return 0 if not args.wait or task.status is TaskStatus.SUCCEEDED else 1

    return _with_container(settings, run)


def status(settings: Settings, args: argparse.Namespace) -> int:
    async def run(container: Container) -> int:
        from hexq.functions.wire import task_view

        _print_json(task_view(await container.tasks.get(args.id)))
        return 0

    return _with_container(settings, run, stored=True)


def list_tasks(settings: Settings, args: argparse.Namespace) -> int:
    query = TaskQuery(status=None if args.status is None else TaskStatus(args.status), type=args.type,
                      queue=args.queue, limit=args.limit, cursor=args.cursor, search=args.search,
                      **filters.from_args(args))
    return _with_container(settings, lambda c: _show_page(c, query, args.json, empty="no tasks"), stored=True)


def cancel(settings: Settings, args: argparse.Namespace) -> int:
    """Exit 1 when any id was not cancelled: unknown, or finished. A running task is asked to stop (its
    worker does, at its next heartbeat): that counts as done."""
    async def run(container: Container) -> int:
        done: dict[bool, list[str]] = {True: [], False: []}  # cancelled at once / asked to stop
        ids = list(dict.fromkeys(args.ids))
        for task_id in ids:
            try:
                task = await container.tasks.cancel(task_id)
            except TaskNotFound as exc:
                print(f"hexq: error: {exc}", file=sys.stderr)
            except InvalidTransition as exc:
                print(f"hexq: error: cannot cancel task {task_id!r}: it is {exc.current}", file=sys.stderr)
            else:
                done[task.status is TaskStatus.CANCELLED].append(task.id)
        print(f"cancelled {len(done[True])} task(s)" + "".join(f"\n  {i}" for i in done[True]))
        if done[False]:
            print(f"asked {len(done[False])} running task(s) to stop; each ends cancelled at its worker's next "
                  "heartbeat" + "".join(f"\n  {i}" for i in done[False]))
        return 0 if len(done[True]) + len(done[False]) == len(ids) else 1

    return _with_container(settings, run, stored=True)


def stats(settings: Settings, args: argparse.Namespace) -> int:
    async def run(container: Container) -> int:
        from hexq.functions.tables import print_stats
        from hexq.functions.wire import stats_to_dict

        figures = stats_to_dict(await container.tasks.stats(), await container.tasks.pressures())
        if args.json:
            _print_json(figures)
        else:
            print_stats(figures)
        return 0

    return _with_container(settings, run, stored=True)


def dead(settings: Settings, args: argparse.Namespace) -> int:
    async def run(container: Container) -> int:
        if args.replay_matching:
            from hexq.functions.replay_matching import replay_matching

            return await replay_matching(container, args)
        if args.yes or args.dry_run:
            raise ValidationError("--yes and --dry-run go with --replay-matching")
        if args.replay_all or args.replay is not None:
            return await _replay(container, args.replay, replay_all=args.replay_all)
        query = TaskQuery(status=TaskStatus.DEAD, type=args.type, queue=args.queue, limit=args.limit,
                          cursor=args.cursor, search=args.search, **filters.from_args(args))
        return await _show_page(container, query, args.json, empty="no dead tasks")

    return _with_container(settings, run, stored=True)


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


async def _show_page(container: Container, query: TaskQuery, as_json: bool, *, empty: str) -> int:
    from hexq.functions.tables import print_tasks
    from hexq.functions.wire import page_to_dict

    page = page_to_dict(await container.tasks.query(query))
    if as_json:
        _print_json(page)
    else:
        print_tasks(page["tasks"], page["next_cursor"], empty=empty)
        if query.search:
            more = "" if page["complete"] else " (not complete: --cursor continues the scan)"
            print(f"{len(page['tasks'])} match(es) in {page['scanned']:,} scanned{more}")
    return 0


# -- schedules ------------------------------------------------------------------------------------
def schedules(settings: Settings, args: argparse.Namespace) -> int:
    async def run(container: Container) -> int:
        from hexq.functions.tables import print_schedules
        from hexq.functions.wire import schedules_to_dict

        listing = schedules_to_dict(await container.schedules.all())
        if args.json:
            _print_json(listing)
        else:
            print_schedules(listing["schedules"])
        return 0

    return _with_container(settings, run, stored=True)


def schedule_put(settings: Settings, args: argparse.Namespace) -> int:
    """Create or replace; a replaced schedule keeps its tenant (the CLI acts for every tenant)."""
    payload = _payload(args.payload)

    async def run(container: Container) -> int:
        from hexq.functions.wire import schedule_view

        schedule = await container.schedules.put(args.name, args.spec, args.type, payload, queue=args.queue,
                                                 priority=Priority.parse(args.priority), enabled=not args.disabled,
                                                 tenant=None)
        _print_json(schedule_view(schedule))
        return 0

    return _with_container(settings, run)


def schedule_delete(settings: Settings, args: argparse.Namespace) -> int:
    async def run(container: Container) -> int:
        await container.schedules.delete(args.name)
        print(f"deleted schedule {args.name}")
        return 0

    return _with_container(settings, run, stored=True)


# -- queues ---------------------------------------------------------------------------------------
def queues(settings: Settings, args: argparse.Namespace) -> int:
    async def run(container: Container) -> int:
        from hexq.functions.tables import print_queues
        from hexq.functions.wire import queues_to_dict

        listing = queues_to_dict(await container.queues.queues())
        if args.json:
            _print_json(listing)
        else:
            print_queues(listing["queues"])
        return 0

    return _with_container(settings, run, stored=True)


def queue_pause(settings: Settings, args: argparse.Namespace) -> int:
    async def run(container: Container) -> int:
        changed = await container.queues.pause(args.name)
        print(f"paused queue {args.name}" if changed else f"queue {args.name} was already paused")
        return 0

    return _with_container(settings, run)  # a queue with no task yet may be paused ahead


def queue_resume(settings: Settings, args: argparse.Namespace) -> int:
    async def run(container: Container) -> int:
        changed = await container.queues.resume(args.name)
        print(f"resumed queue {args.name}" if changed else f"queue {args.name} was not paused")
        return 0

    return _with_container(settings, run)


# -- the others -----------------------------------------------------------------------------------
def keygen(settings: Settings, args: argparse.Namespace) -> int:
    from hexq.functions.auth import keygen as make_key

    return make_key(args)


def bench(settings: Settings, args: argparse.Namespace) -> int:
    from hexq.functions.bench.runner import run_command

    return run_command(settings, args)


def migrate(settings: Settings, args: argparse.Namespace) -> int:
    from hexq.functions.migrate import run_command

    return run_command(settings, args)


def experiment(settings: Settings, args: argparse.Namespace) -> int:
    from hexq.functions.experiment.runner import run_command

    return run_command(settings, args)


# -- helpers --------------------------------------------------------------------------------------
@contextlib.contextmanager
def _own_metrics(container: Container) -> Iterator[None]:
    """A worker's or poller's own counters on --metrics-port (HEXQ_METRICS_PORT), while inside."""
    settings = container.settings
    if settings.metrics_port == 0:
        yield
        return
    from hexq.functions.metrics.exposition import serve_own, stop_own

    server = serve_own(container.metrics, settings.metrics_host, settings.metrics_port)
    try:
        yield
    finally:
        stop_own(server)


def _with_container(settings: Settings, run: Callable[[Container], Awaitable[int]], *, stored: bool = False,
                    fast: bool = False, serving: bool = False) -> int:
    """`stored`: the command acts only on what is already stored, so a missing SQLite file is an error.
    `fast`: a long-running command, run on uvloop when it is installed (functions/eventloop.py).
    `serving`: it runs tasks or schedules (worker, poller), so it tells of task events (functions/observers.py);
    a one-shot command is a client and tells nobody."""
    if stored:
        require_database(settings.backend_url)

    async def body() -> int:
        container = bootstrap(settings, serving=serving)
        try:
            return await run(container)
        finally:
            await container.backend.close()

    if fast:
        from hexq.functions.eventloop import run as on_fast_loop

        return on_fast_loop(body())
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


def _print_json(value: object) -> None:
    print(json.dumps(value, indent=2))

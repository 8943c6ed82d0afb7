"""`hexq bench`: run the phases in order against one backend and report every figure.

Phases (each skippable with --skip, each stopping by itself at --timeout):
  client   TaskService.submit in a loop, in this process; then from --coroutines coroutines at once
  http     POST /v1/tasks one by one on a kept-alive connection, then over --connections at once,
           against the API in a child process
  bulk     TaskService.submit_bulk in chunks of 1000; these tasks are the first drain's backlog
  drain    W `hexq worker` processes (in-process workers for memory://) clear N noop tasks, once per
           entry of --workers (W, or WxC for concurrency C)
  latency  one worker, submits at --rate for --duration; percentiles of submit-to-start/finish
  serve    the same under `hexq serve`, submitting through its API (not on memory://)

Before each of the first four, on Redis and SQLite, its baseline runs the same loop against the
same backend doing only the plainest write or read (baselines.py, plain.py; `--skip baselines`
leaves them out); every hexq figure is then also given as a ratio to its baseline (summary.py).
On Redis every phase also reports what the server spent per task (redisstats.py).

Without --backend the bench uses a temporary SQLite file. With a persistent backend named by URL,
what the bench queued and did not drain is drained at the end, so it leaves no queued tasks behind
(the succeeded ones stay until the poller purges them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rich.console import Console

from hexq.core.errors import ConfigurationError
from hexq.functions.bench import baselines, enqueue, loops, procs, summary
from hexq.functions.bench.context import Bench, Meter
from hexq.functions.bench.drain import drains
from hexq.functions.bench.figures import load_average, machine, redact
from hexq.functions.bench.latency import latency
from hexq.functions.bench.options import BenchOptions, from_args
from hexq.functions.bench.plain import open_plain
from hexq.functions.bench.redisstats import RedisStats
from hexq.functions.bench.serving import serve_latency
from hexq.functions.bench.spread import spread_url, uneven_shards
from hexq.functions.bench.table import render
from hexq.functions.bootstrap import bootstrap
from hexq.functions.settings import Settings

_TEMPORARY = ("sqlite", "sqlite:", "sqlite://", "sqlite:///")


def run_command(settings: Settings, args: argparse.Namespace) -> int:
    """The CLI entry: exit 0 when every phase (and baseline) finished, 1 when one stopped at its timeout."""
    if args.bench_cold_start:
        from hexq.functions.bench import coldstart

        figures = coldstart.cold_start()
        print(json.dumps(figures, indent=2) if args.bench_json else coldstart.render(figures))
        return 0
    options = from_args(args, settings.log_level)
    if args.bench_metrics_cost:
        from hexq.functions.bench import metrics_cost

        cost = asyncio.run(metrics_cost.metrics_cost(options, settings))
        print(json.dumps(cost, indent=2) if args.bench_json else metrics_cost.render(cost))
        return 0 if cost["drain"]["off"]["complete"] and cost["drain"]["on"]["complete"] else 1
    tty = sys.stdout.isatty()
    console = Console(width=None if tty else 150)  # piped output: wide enough that the tables do not wrap
    progress = (Console(stderr=True) if options.json else console) if tty else None
    report = asyncio.run(run_bench(options, settings, progress))
    if options.json:
        print(json.dumps(report, indent=2))
    else:
        render(report, console)
    return 0 if report["complete"] else 1


async def run_bench(options: BenchOptions, settings: Settings | None = None,
                    console: Console | None = None) -> dict[str, Any]:
    """Run every phase not skipped and return the report (see the module docstring)."""
    settings = settings or Settings()
    started, clock, host = datetime.now(UTC), time.monotonic(), machine()
    # httpx logs every request at INFO, and the in-process workers every invocation: the bench would
    # time its own logging.
    with _quiet("httpx", "httpcore", "hexq.worker"), tempfile.TemporaryDirectory(prefix="hexq-bench-") as tmp:
        url, temporary = backend_url(options.backend, Path(tmp))
        url, spread_notes = spread_url(url, options.queues, options.shards)
        modules = tuple(dict.fromkeys((*settings.task_modules, "hexq.functions.examples")))
        try:
            container = bootstrap(settings.override(backend_url=url, task_modules=modules))
        except ConfigurationError as exc:
            if not spread_notes:
                raise
            raise ConfigurationError(f"{exc} ({'; '.join(spread_notes)})") from exc  # the bench wrote that option
        try:
            with Meter(console) as meter:
                b = Bench(options, container, url, Path(tmp), meter)
                b.notes += spread_notes + uneven_shards(options)
                report = await _instrumented(b, host)
                if not temporary and not b.local:
                    await _cleanup(b)
        finally:
            await container.backend.close()
    host["load_average_after"] = load_average()
    done = [p for p in (*report["enqueue"].values(), *(report["drain"] or []), report["latency"],
                        report["serve_latency"], *(report["baselines"] or {}).values()) if p is not None]
    return {
        "backend": redact(url), "backend_kind": urlsplit(url).scheme, "temporary_backend": temporary,
        "machine": host, "started_at": started.isoformat(timespec="seconds"),
        "seconds": round(time.monotonic() - clock, 3), "config": _config(options),
        "drain_queues": list(b.queues.spread),  # --queues / --shards: the queues every drain row used
        **report, "complete": all(p["complete"] for p in done), "notes": b.notes,
    }


async def _instrumented(b: Bench, host: dict[str, Any]) -> dict[str, Any]:
    """The phases, with the baselines' backend operations and Redis's accounting open around them."""
    scheme = urlsplit(b.url).scheme
    if scheme in ("redis", "rediss", "redis+cluster"):  # a cluster's: read from every master and summed
        b.redis = RedisStats(b.url)
    b.plain = open_plain(b.url, b.queues.plain) if b.options.baselines else None
    if b.options.baselines and b.plain is None:
        b.notes.append(f"{scheme}:// has no baselines (nothing plainer to compare with), so no ratios")
    try:
        if b.redis is not None:
            host.update(await b.redis.server())
            pid = host.get("redis_pid")
            b.redis_pid = pid if isinstance(pid, int) and procs.is_process(pid, "redis-server") else None
        return await _phases(b)
    finally:
        if b.plain is not None:
            await b.plain.close(drop=True)
        if b.redis is not None:
            await b.redis.close()


def backend_url(given: str | None, workdir: Path) -> tuple[str, bool]:
    """The URL to bench, and whether it is a temporary SQLite file made for this run."""
    if given is None or given in _TEMPORARY:
        return f"sqlite:///{workdir / 'bench.db'}", True  # an absolute path: sqlite:////tmp/...
    if given in ("memory", "memory:"):
        return "memory://", False
    return given, False


ENQUEUE_PHASES = ("client", "client_concurrent", "http", "http_concurrent", "bulk")


async def _phases(b: Bench) -> dict[str, Any]:
    """Every phase not skipped, each hexq one right after its baseline (so both meet the same machine)."""
    o, plain = b.options, b.plain is not None
    queued: dict[str, Any] = dict.fromkeys(ENQUEUE_PHASES)
    base: dict[str, Any] | None = dict.fromkeys((*ENQUEUE_PHASES, "drain")) if plain else None
    rows: list[dict[str, Any]] | None = None
    if o.runs("client"):
        await _client(b, queued, base)
    if o.runs("http"):
        sequential = _has_httpx(b)
        if base is not None:
            base.update(await baselines.http(b, sequential=sequential))
        queued.update(await enqueue.http(b, sequential=sequential))
    if o.runs("bulk"):
        if base is not None:
            base["bulk"] = await baselines.bulk(b)
        queued["bulk"] = await loops.measured(b, lambda: enqueue.bulk(b), chunk=min(o.chunk, o.count))
    if o.runs("drain"):
        if base is not None:
            base["drain"] = await baselines.drain(b)
        rows = await drains(b)
    lat = await latency(b) if o.runs("latency") else None
    served = await serve_latency(b) if o.runs("serve") and not b.local else None
    if b.local and o.runs("serve"):
        b.notes.append("the serve phase does not run on memory://: serve's backend would be its own, out of reach")
    if b.local and (rows or lat):
        b.notes.append("memory:// lives in one process: the drain and latency workers ran in the bench process "
                       "(run_worker on its event loop), not as worker processes; the HTTP server had its own "
                       "memory backend")
    summary.attach_ratios(queued, rows, base)
    return {"enqueue": queued, "drain": rows, "latency": lat, "serve_latency": served, "baselines": base,
            "redis_cpu": summary.redis_cpu(queued, rows, lat, base, served) if b.redis is not None else None}


async def _client(b: Bench, queued: dict[str, Any], base: dict[str, Any] | None) -> None:
    k = b.options.coroutines
    if base is not None:
        base["client"] = await baselines.client(b)
    queued["client"] = await loops.measured(b, lambda: enqueue.client(b))
    if base is not None:
        base["client_concurrent"] = await baselines.client_concurrent(b)
    queued["client_concurrent"] = await loops.measured(b, lambda: enqueue.client_concurrent(b), coroutines=k)


def _has_httpx(b: Bench) -> bool:
    try:
        import httpx  # noqa: F401  # a dev dependency
    except ImportError:
        b.notes.append("the sequential HTTP phase was skipped: it uses httpx, which is not installed")
        return False
    return True


async def _cleanup(b: Bench) -> None:
    """Drain what this run left queued in a persistent backend (bounded by --timeout)."""
    settings = b.container.settings.override(queues=b.queues.all(), concurrency=500, idle_wait=0.05)
    invocation = replace(b.container, settings=settings).invocation("bench-cleanup")
    stop = asyncio.Event()
    started = time.monotonic()
    job = asyncio.create_task(invocation.run(stop))
    done, _ = await asyncio.wait({job}, timeout=b.options.timeout)
    if not done:
        stop.set()
        b.notes.append("cleanup stopped at --timeout: some bench tasks are still queued in bench.* queues")
    report = await job
    if report.claimed:
        b.notes.append(f"cleanup: ran the {report.claimed} bench tasks left queued, so none stay behind "
                       f"({time.monotonic() - started:.1f} s, not in any figure)")


@contextmanager
def _quiet(*names: str) -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(logging.WARNING, logger.getEffectiveLevel()))
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _config(o: BenchOptions) -> dict[str, Any]:
    return {"count": o.count, "drains": [list(d) for d in o.drains()], "concurrency": o.concurrency,
            "coroutines": o.coroutines,
            "rate": o.rate, "duration": o.duration, "timeout": o.timeout, "connections": o.connections,
            "chunk": o.chunk, "skipped": sorted(o.skip), "api_log_level": o.log_level,
            "queues": o.queues, "shards": o.shards}

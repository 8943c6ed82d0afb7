"""Serve phase: submit-to-start latency under `hexq serve`, the embedded setup's own path.

The latency phase runs a `hexq worker` beside the bench, which on SQLite can only poll for work
(5 ms rising to 50 ms). Under `hexq serve` a submit through its API wakes the poller and rings the
pool's processes, and the issue states its SQLite latency target there. So this phase starts
`hexq serve` on the backend, its workers narrowed to this phase's queue, sends one untimed task
through it (the process pool is up once that one has run), then POSTs noop tasks to its API at
--rate for --duration, open-loop, on one kept-alive connection, and reads the tasks back for the
same percentiles as the latency phase. Not on memory://: serve would have a backend of its own
that the bench cannot read.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from hexq.functions.bench import enqueue, pool, procs, rawhttp
from hexq.functions.bench.context import READY_TIMEOUT, Bench
from hexq.functions.bench.latency import figures, open_loop

_PORT = re.compile(r"https?://[^ ]*:(\d+)")


async def serve_latency(b: Bench) -> dict[str, Any]:
    queue, total = b.queues.serve, b.options.latency_tasks
    args = ["hexq.functions.cli", "serve", "--backend", b.url, "--port", "0", "--queues", queue,
            "--tasks", "hexq.functions.examples", "--log-level", b.options.log_level]
    server = pool.Pool(b, baseline=await b.succeeded())
    try:
        server.children.append(await procs.start("serve", args, b.workdir, b.options.profile))
        await procs.wait_ready(server.children, READY_TIMEOUT)
        port = _port(server.children[0].first_line)
        await _listening(port, server)
        async with rawhttp.Connections(port, 1) as connection:
            post = connection.post(rawhttp.post_request("/v1/tasks", enqueue.body(queue)))
            await _warm_up(b, server, post)
            deadline = b.deadline()
            redis = await b.redis_before()
            with b.meter.phase(f"latency under serve: {b.options.rate:g}/s", total) as show:
                submitted, submit_seconds, elapsed = await open_loop(b, post, total, deadline, show, server.check)
            with b.meter.phase("latency under serve: the rest", submitted) as show:
                await server.wait(submitted + 1, deadline, show)
            usage = await b.redis_since(redis, submitted)
    finally:
        await server.stop()
    tasks = await b.finished(queue, submitted + 1)
    tasks = sorted(tasks, key=lambda t: t.created_at)[1:]  # the warm-up task is the oldest
    return figures(b, "hexq serve", total, submitted, submit_seconds, elapsed, tasks, usage)


async def _warm_up(b: Bench, server: pool.Pool, post: rawhttp.Post) -> None:
    await post()
    with b.meter.phase("latency under serve: warm-up", 1) as show:
        if await server.wait(1, b.deadline(), show) < 1:
            raise procs.BenchError("hexq serve did not run its first task within --timeout")


async def _listening(port: int, server: pool.Pool) -> None:
    """serve prints its address once the socket is bound, a moment before uvicorn listens on it."""
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline:
                raise procs.BenchError(f"hexq serve is not listening on {port} after {READY_TIMEOUT:g}s") from None
            server.check()
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return


def _port(line: str) -> int:
    match = _PORT.search(line)
    if match is None:
        raise procs.BenchError(f"hexq serve printed no address: {line!r}")
    return int(match.group(1))

"""Enqueue phases: one by one and from many coroutines through TaskService, over HTTP, and in bulk.

Every phase submits `noop` tasks and stops at `--count` or at its timeout, whichever comes first.
The HTTP phases talk to a server in a child process (hexq.functions.bench.http_server: hexq's API,
or the bare baseline endpoint), so client and server each have their own interpreter, as they would
in production. The sequential client is httpx (sync, one kept-alive connection); the concurrent one
is hexq.functions.bench.rawhttp (see there why). Both report the client's and the server's CPU per
request, so a figure bound by the client shows as such.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from hexq.core.services import SubmitRequest
from hexq.functions.bench import loops, procs, rawhttp
from hexq.functions.bench.context import READY_TIMEOUT, Bench, Show
from hexq.functions.bench.figures import Throughput, per_task

NOOP = "noop"
_CLOCK_EVERY = 64  # look at the deadline every this many submits, not every one
_SHOW_EVERY = 100

HttpRun = Callable[[Bench, int, str], Awaitable[Throughput]]


def noop(queue: str) -> SubmitRequest:
    return SubmitRequest(type=NOOP, payload={}, queue=queue)


def body(queue: str) -> bytes:
    """The JSON a client POSTs for one noop task (the baselines push the same bytes)."""
    return json.dumps({"type": NOOP, "payload": {}, "queue": queue}).encode()


async def client(b: Bench) -> Throughput:
    """TaskService.submit in a loop: one task, one backend round trip."""
    request, service = noop(b.queues.enqueue), b.container.tasks
    return await loops.one_by_one(b, "enqueue: client, 1 by 1", lambda: service.submit(request))


async def client_concurrent(b: Bench) -> Throughput:
    """TaskService.submit from --coroutines coroutines at once, each awaiting its own submit."""
    request, service, k = noop(b.queues.enqueue), b.container.tasks, b.options.coroutines
    return await loops.concurrently(b, f"enqueue: client, {k} coroutines", lambda: service.submit(request), k)


async def bulk(b: Bench) -> Throughput:
    """TaskService.submit_bulk in chunks of --chunk (1000). These tasks are the first drain's backlog."""
    service, chunk, turns = b.container.tasks, min(b.options.chunk, b.options.count), b.drain_turns
    throughput = await loops.in_chunks(b, f"enqueue: bulk x{chunk}", lambda size: service.submit_bulk(turns.take(size)),
                                       chunk)
    b.prequeued = throughput.tasks
    return throughput


async def http(b: Bench, *, sequential: bool = True, plain: bool = False) -> dict[str, Any]:
    """Both HTTP phases (the sequential one needs httpx) against one server process: hexq's API, or with
    `plain` the bare baseline endpoint."""
    name = "plain-http-server" if plain else "http-server"
    args = ["hexq.functions.bench.http_server", b.url, b.options.log_level, *([b.queues.plain] if plain else [])]
    server = await procs.start(name, args, b.workdir, b.options.profile)
    try:
        await procs.wait_ready([server], READY_TIMEOUT)
        port, served = _ready_line(server.first_line)
        runs: list[tuple[str, HttpRun]] = [("http", _sequential), ("http_concurrent", _concurrent)]
        results = {}
        for phase, run in runs[0 if sequential else 1:]:
            results[phase] = await _measured(b, server, phase, run, port, "baseline: " if plain else "")
            results[phase].update(served)
        return results
    finally:
        settings = b.container.settings
        await procs.stop([server], settings.grace + 5.0)


async def _measured(b: Bench, server: procs.Child, phase: str, run: HttpRun, port: int,
                    prefix: str) -> dict[str, Any]:
    procs.sample(server, "before")
    client_cpu = time.process_time()
    redis = await b.redis_before()
    throughput = await run(b, port, prefix)
    client_cpu = time.process_time() - client_cpu
    procs.sample(server, "after")
    cpu = server.samples["after"] - server.samples["before"]
    extra: dict[str, Any] = {"client": "httpx.Client" if phase == "http" else "hexq.functions.bench.rawhttp",
                             "server_cpu_seconds": round(cpu, 3),
                             "server_cpu_us_per_task": per_task(cpu, throughput.tasks),
                             "client_cpu_us_per_task": per_task(client_cpu, throughput.tasks),
                             "redis": await b.redis_since(redis, throughput.tasks)}
    if phase == "http_concurrent":
        extra["connections"] = b.options.connections
    return throughput.to_dict(**extra)


def _ready_line(line: str) -> tuple[int, dict[str, str]]:
    """`port <n> loop <loop> http <protocol>`: the port, and how the server is served."""
    words = line.split()
    fields = dict(zip(words[::2], words[1::2], strict=False))
    return int(fields["port"]), {"server_loop": fields.get("loop", "?"), "server_http": fields.get("http", "?")}


async def _sequential(b: Bench, port: int, prefix: str) -> Throughput:
    n = b.options.count
    with b.meter.phase(f"{prefix}enqueue: HTTP, sequential", n) as show:
        # A blocking client in a thread: the sequential loop has nothing to overlap, and the sync
        # client costs less per request than the async one, so more of the figure is the server's.
        return await asyncio.to_thread(_post_all, f"http://127.0.0.1:{port}", n, body(b.queues.enqueue),
                                       b.deadline(), show)


def _post_all(base: str, n: int, content: bytes, deadline: float, show: Show) -> Throughput:
    import httpx

    with httpx.Client(base_url=base, headers={"content-type": "application/json"}) as client:
        client.get("/healthz").raise_for_status()  # connect outside the timing; then one kept-alive connection
        done = 0
        started = time.perf_counter()
        while done < n and (done % _CLOCK_EVERY or time.monotonic() < deadline):
            _check(client.post("/v1/tasks", content=content))
            done += 1
            if done % _SHOW_EVERY == 0:
                show(done)
        seconds = time.perf_counter() - started
    show(done)
    return Throughput(done, seconds, done == n)


async def _concurrent(b: Bench, port: int, prefix: str) -> Throughput:
    k = b.options.connections
    request = rawhttp.post_request("/v1/tasks", body(b.queues.enqueue))
    async with rawhttp.Connections(port, k) as connections:  # opened outside the timing, like httpx's
        return await loops.concurrently(b, f"{prefix}enqueue: HTTP, {k} connections", connections.post(request), k)


def _check(response: Any) -> None:
    if response.status_code != 202:
        raise procs.BenchError(f"POST /v1/tasks answered {response.status_code}: {response.text[:300]}")

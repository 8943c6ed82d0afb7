"""Enqueue phases: one by one through TaskService, one by one and concurrently over HTTP, and in bulk.

Every phase submits `noop` tasks and stops at `--count` or at its timeout, whichever comes first.
The HTTP phases talk to the API in a child process (hexq.functions.bench.http_server), so client and
server each have their own interpreter, as they would in production. The sequential client is
httpx (sync, one kept-alive connection); the concurrent one is hexq.functions.bench.rawhttp (see there
why). Both report the client's and the server's CPU per request, so a figure bound by the client
shows as such.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any

from hexq.core.services import SubmitRequest
from hexq.functions.bench import procs, rawhttp
from hexq.functions.bench.context import READY_TIMEOUT, Bench, Show
from hexq.functions.bench.figures import Throughput

NOOP = "noop"
_CLOCK_EVERY = 64  # look at the deadline every this many submits, not every one
_SHOW_EVERY = 100


def noop(queue: str) -> SubmitRequest:
    return SubmitRequest(type=NOOP, payload={}, queue=queue)


async def client(b: Bench) -> Throughput:
    """TaskService.submit in a loop: one task, one backend round trip."""
    n, request, service, deadline = b.options.count, noop(b.queues.enqueue), b.container.tasks, b.deadline()
    with b.meter.phase("enqueue: client, 1 by 1", n) as show:
        done = 0
        started = time.perf_counter()
        while done < n and (done % _CLOCK_EVERY or time.monotonic() < deadline):
            await service.submit(request)
            done += 1
            if done % _SHOW_EVERY == 0:
                show(done)
        seconds = time.perf_counter() - started
        show(done)
    return Throughput(done, seconds, done == n)


async def bulk(b: Bench) -> Throughput:
    """TaskService.submit_bulk in chunks of --chunk (1000). These tasks are the drain phase's backlog."""
    n, service, deadline = b.options.count, b.container.tasks, b.deadline()
    chunk = [noop(b.queues.drain)] * min(b.options.chunk, n)
    with b.meter.phase(f"enqueue: bulk x{len(chunk)}", n) as show:
        done = 0
        started = time.perf_counter()
        while done < n and time.monotonic() < deadline:
            size = min(len(chunk), n - done)
            await service.submit_bulk(chunk[:size])
            done += size
            show(done)
        seconds = time.perf_counter() - started
    b.prequeued = done
    return Throughput(done, seconds, done == n)


async def http(b: Bench, *, sequential: bool = True) -> dict[str, Any]:
    """Both HTTP phases (the sequential one needs httpx) against one server process."""
    server = await procs.start("http-server", ["hexq.functions.bench.http_server", b.url], b.workdir, b.options.profile)
    try:
        await procs.wait_ready([server], READY_TIMEOUT)
        port = int(server.first_line.split()[-1])
        results = {}
        for name, run in (("http", _sequential), ("http_concurrent", _concurrent))[0 if sequential else 1:]:
            procs.sample(server, "before")
            client_cpu = time.process_time()
            throughput = await run(b, port)
            client_cpu = time.process_time() - client_cpu
            procs.sample(server, "after")
            cpu = server.samples["after"] - server.samples["before"]
            extra: dict[str, Any] = {"client": "httpx.Client" if name == "http" else "hexq.functions.bench.rawhttp",
                                     "server_cpu_seconds": round(cpu, 3),
                                     "server_cpu_us_per_task": _per_task(cpu, throughput.tasks),
                                     "client_cpu_us_per_task": _per_task(client_cpu, throughput.tasks)}
            if name == "http_concurrent":
                extra["connections"] = b.options.connections
            results[name] = throughput.to_dict(**extra)
        return results
    finally:
        settings = b.container.settings
        await procs.stop([server], settings.grace + 5.0)


def _body(queue: str) -> bytes:
    return json.dumps({"type": NOOP, "payload": {}, "queue": queue}).encode()


async def _sequential(b: Bench, port: int) -> Throughput:
    n = b.options.count
    with b.meter.phase("enqueue: HTTP, sequential", n) as show:
        # A blocking client in a thread: the sequential loop has nothing to overlap, and the sync
        # client costs less per request than the async one, so more of the figure is the server's.
        return await asyncio.to_thread(_post_all, f"http://127.0.0.1:{port}", n, _body(b.queues.enqueue),
                                       b.deadline(), show)


def _post_all(base: str, n: int, body: bytes, deadline: float, show: Show) -> Throughput:
    import httpx

    with httpx.Client(base_url=base, headers={"content-type": "application/json"}) as client:
        client.get("/healthz").raise_for_status()  # connect outside the timing; then one kept-alive connection
        done = 0
        started = time.perf_counter()
        while done < n and (done % _CLOCK_EVERY or time.monotonic() < deadline):
            _check(client.post("/v1/tasks", content=body))
            done += 1
            if done % _SHOW_EVERY == 0:
                show(done)
        seconds = time.perf_counter() - started
    show(done)
    return Throughput(done, seconds, done == n)


async def _concurrent(b: Bench, port: int) -> Throughput:
    n, k, deadline = b.options.count, b.options.connections, b.deadline()
    request = rawhttp.post_request("/v1/tasks", _body(b.queues.enqueue))
    tickets = itertools.count()
    done = 0
    with b.meter.phase(f"enqueue: HTTP, {k} connections", n) as show:
        def more() -> bool:
            return next(tickets) < n and time.monotonic() < deadline

        def one_done() -> None:
            nonlocal done
            done += 1
            if done % _SHOW_EVERY == 0:
                show(done)

        started = time.perf_counter()
        await asyncio.gather(*(rawhttp.post_loop(port, request, more, one_done) for _ in range(k)))
        seconds = time.perf_counter() - started
        show(done)
    return Throughput(done, seconds, done == n)


def _per_task(seconds: float, tasks: int) -> float | None:
    return round(seconds / tasks * 1e6, 1) if tasks else None


def _check(response: Any) -> None:
    if response.status_code != 202:
        raise procs.BenchError(f"POST /v1/tasks answered {response.status_code}: {response.text[:300]}")


"""Baseline rows: the same loops as hexq's phases, doing only the backend's plainest write or read.

Each baseline runs just before the hexq phase it is the yardstick for, on the same backend, so both
meet the same machine; the report prints every hexq figure as a ratio to its baseline (figures.py).
What each one does is in hexq.functions.bench.plain.
"""

from __future__ import annotations

import time
from typing import Any

from hexq.functions.bench import enqueue, loops
from hexq.functions.bench.context import Bench
from hexq.functions.bench.figures import Throughput, per_task
from hexq.functions.bench.plain import Plain


def _plain(b: Bench) -> Plain:
    assert b.plain is not None, "baselines run only on a backend that has them"
    return b.plain


async def client(b: Bench) -> dict[str, Any]:
    plain, data = _plain(b), enqueue.body(b.queues.enqueue)
    return await loops.measured(b, lambda: loops.one_by_one(b, "baseline: 1 by 1", lambda: plain.push(data)),
                                what=plain.what["client"])


async def client_concurrent(b: Bench) -> dict[str, Any]:
    plain, data, k = _plain(b), enqueue.body(b.queues.enqueue), b.options.coroutines

    async def run() -> Throughput:
        return await loops.concurrently(b, f"baseline: {k} coroutines", lambda: plain.push(data), k)

    return await loops.measured(b, run, what=plain.what["client_concurrent"], coroutines=k)


async def http(b: Bench, *, sequential: bool = True) -> dict[str, Any]:
    results = await enqueue.http(b, sequential=sequential, plain=True)
    for figures in results.values():
        figures["what"] = _plain(b).what["http"]
    return results


async def bulk(b: Bench) -> dict[str, Any]:
    plain, data, chunk = _plain(b), enqueue.body(b.queues.drain), min(b.options.chunk, b.options.count)
    bodies = [data] * chunk
    figures = await loops.measured(b, lambda: loops.in_chunks(b, f"baseline: bulk x{chunk}",
                                                              lambda size: plain.push_many(bodies[:size]), chunk),
                                   what=plain.what["bulk"], chunk=chunk)
    b.plain_queued += figures["tasks"]
    return figures


async def drain(b: Bench) -> dict[str, Any]:
    """Pop --count bodies one by one from the bench process (what the bulk baseline did not queue is
    queued first, untimed); its CPU is this process's."""
    plain, n = _plain(b), b.options.count
    missing = n - b.plain_queued
    data = enqueue.body(b.queues.drain)
    while missing > 0:
        size = min(b.options.chunk, missing)
        await plain.push_many([data] * size)
        missing -= size
    cpu = 0.0

    async def run() -> Throughput:
        nonlocal cpu
        cpu = time.process_time()
        taken = await loops.until_taken(b, "baseline: drain, 1 process", plain.pop, n)
        cpu = time.process_time() - cpu
        return taken

    figures = await loops.measured(b, run, what=plain.what["drain"], workers=1)
    b.plain_queued = max(0, b.plain_queued - figures["tasks"])
    figures.update(cpu_seconds=round(cpu, 3), cpu_us_per_task=per_task(cpu, figures["tasks"]))
    return figures

"""The timed loops every enqueue phase and its baseline share, so both pay the same loop overhead.

Each runs `op` until `--count` tasks are done or the phase's deadline passes, and says which.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Any

from hexq.functions.bench.context import Bench
from hexq.functions.bench.figures import Throughput

Op = Callable[[], Awaitable[object]]
_CLOCK_EVERY = 64  # look at the deadline every this many calls, not every one
_SHOW_EVERY = 100


async def one_by_one(b: Bench, label: str, op: Op) -> Throughput:
    """`op` in a loop, each awaited before the next."""
    n, deadline = b.options.count, b.deadline()
    with b.meter.phase(label, n) as show:
        done = 0
        started = time.perf_counter()
        while done < n and (done % _CLOCK_EVERY or time.monotonic() < deadline):
            await op()
            done += 1
            if done % _SHOW_EVERY == 0:
                show(done)
        seconds = time.perf_counter() - started
        show(done)
    return Throughput(done, seconds, done == n)


async def concurrently(b: Bench, label: str, op: Op, coroutines: int) -> Throughput:
    """`coroutines` loops of `op` at once, each awaiting its own call before the next."""
    n, deadline = b.options.count, b.deadline()
    tickets = itertools.count()
    done = 0
    with b.meter.phase(label, n) as show:
        async def loop() -> None:
            nonlocal done
            while next(tickets) < n and time.monotonic() < deadline:
                await op()
                done += 1
                if done % _SHOW_EVERY == 0:
                    show(done)

        started = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(coroutines)))
        seconds = time.perf_counter() - started
        show(done)
    return Throughput(done, seconds, done == n)


async def in_chunks(b: Bench, label: str, op: Callable[[int], Awaitable[object]], chunk: int) -> Throughput:
    """`op(size)` for chunks of at most `chunk` until --count are done."""
    n, deadline = b.options.count, b.deadline()
    with b.meter.phase(label, n) as show:
        done = 0
        started = time.perf_counter()
        while done < n and time.monotonic() < deadline:
            size = min(chunk, n - done)
            await op(size)
            done += size
            show(done)
        seconds = time.perf_counter() - started
    return Throughput(done, seconds, done == n)


async def until_taken(b: Bench, label: str, take: Callable[[], Awaitable[bool]], n: int) -> Throughput:
    """`take()` one by one until it has answered True `n` times (a drain), or the deadline passes."""
    deadline = b.deadline()
    with b.meter.phase(label, n) as show:
        done = 0
        started = time.perf_counter()
        while done < n and (done % _CLOCK_EVERY or time.monotonic() < deadline):
            if await take():
                done += 1
                if done % _SHOW_EVERY == 0:
                    show(done)
            elif time.monotonic() >= deadline:
                break
        seconds = time.perf_counter() - started
        show(done)
    return Throughput(done, seconds, done == n)


async def measured(b: Bench, run: Callable[[], Awaitable[Throughput]], **extra: Any) -> dict[str, Any]:
    """Run a phase and report it with what Redis spent on it (None on other backends)."""
    before = await b.redis_before()
    throughput = await run()
    return throughput.to_dict(**extra, redis=await b.redis_since(before, throughput.tasks))

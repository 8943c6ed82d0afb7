"""What a circuit breaker adds to a task of a type that has one, while it is closed: `Circuits.closed` before the
handler and `Circuits.record` of its success after, on an in-memory store (no round trip is made on this path).

    python -m hexq.functions.bench.breaker_cost [N]
"""

from __future__ import annotations

import asyncio
import sys
import time

from hexq.adapters.memory import MemoryBackend
from hexq.core.breaker import Breaker
from hexq.core.circuits import Circuits
from hexq.core.clock import SystemClock


async def cost(n: int) -> float:
    """Microseconds per task, the loop's own overhead included."""
    circuits = Circuits(MemoryBackend(), SystemClock())
    await circuits.start()
    policy = Breaker()
    started = time.perf_counter()
    for _ in range(n):
        if not circuits.closed("t"):  # as hexq.core.running does: admit only when it is not closed
            await circuits.admit("t", policy, 300.0)
        circuits.record("t", policy, False)
    elapsed = time.perf_counter() - started
    await circuits.close()
    return elapsed / n * 1e6


def main(argv: list[str]) -> None:
    n = int(argv[0]) if argv else 200_000
    print(f"closed + record of a success, closed breaker: {asyncio.run(cost(n)):.3f} µs per task ({n} tasks)")


if __name__ == "__main__":
    main(sys.argv[1:])

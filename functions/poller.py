"""`hexq poller`: the poller tick on a timer until SIGTERM/SIGINT.

Without an invoker it only does housekeeping (promote due tasks, recover expired leases, fire
schedules, purge old results): the right setup next to long-running `hexq worker` processes.
With one, it also starts worker invocations sized by the backlog (what `hexq serve` does).
"""

from __future__ import annotations

import asyncio

from hexq.core.ports import Invoker
from hexq.functions.bootstrap import Container
from hexq.functions.worker import stop_on_signals


async def run_poller(container: Container, stop: asyncio.Event, invoker: Invoker | None = None, *,
                     signals: bool = True, wake: asyncio.Event | None = None) -> None:
    """Tick until `stop`; `wake` (hexq serve sets it on a submit) starts invocations between ticks."""
    with stop_on_signals(stop, enabled=signals):
        await container.poller(invoker).run(stop, wake)

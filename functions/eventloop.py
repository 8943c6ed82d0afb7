"""The event loop the long-running commands run on: uvloop's when it is installed, asyncio's otherwise.

uvloop schedules callbacks and tasks in C, which a worker does several times per task and the API per
request. Kept apart from functions/serve.py so a worker process does not import uvicorn to get it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run(main), on the loop loop_factory() makes."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's new_event_loop, or None (asyncio's own loop) when uvloop is not installed."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop

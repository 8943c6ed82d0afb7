"""hexq_backend_op_duration_seconds: the backend, with each of its operations timed.

The worker chooses its one-round-trip path by the broker's class (hexq.core.worker._settle_and_claim), so
`timed` returns a wrapper whose class has settle_and_claim only when the wrapped backend's class has it.
Every other attribute (optional ports such as FinishWaiter and the worker registry, `name`, `close`) is the
wrapped backend's own, so isinstance checks against those ports see what the backend has.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import Any, cast

from prometheus_client import Histogram

from hexq.core.ports import Backend
from hexq.functions.metrics.values import Observer, Values

# The operations of the Broker, Sweeper and TaskStore ports, and the rate limiter's: what a task costs.
OPS = ("enqueue", "claim", "settle", "extend", "promote_due", "reclaim_expired", "purge_finished", "backlog", "get",
       "query", "request_cancel", "transition", "stats", "count_waiting", "acquire")


class TimedBackend:
    """`inner`, each operation in OPS observed into the histogram under its name."""

    def __init__(self, inner: Backend, observers: dict[str, Observer]) -> None:
        self._inner = inner
        self._observe = observers

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    @property
    def inner(self) -> Backend:
        return self._inner


def _timed(op: str) -> Callable[..., Awaitable[Any]]:
    async def call(self: TimedBackend, *args: Any, **kwargs: Any) -> Any:
        start = perf_counter()
        try:
            return await getattr(self._inner, op)(*args, **kwargs)
        finally:
            self._observe[op].observe(perf_counter() - start)

    call.__name__ = call.__qualname__ = op
    return call


for _op in OPS:
    setattr(TimedBackend, _op, _timed(_op))


class TimedSettleAndClaim(TimedBackend):
    """For a backend that settles and claims in one round trip (hexq.core.ports.SettleAndClaim)."""


TimedSettleAndClaim.settle_and_claim = _timed("settle_and_claim")  # type: ignore[attr-defined]


def timed(backend: Backend, histogram: Histogram, values: Values) -> Backend:
    both = callable(getattr(type(backend), "settle_and_claim", None))
    observers = {op: values.histogram(histogram.labels(op)) for op in (*OPS, "settle_and_claim")}
    wrapper = (TimedSettleAndClaim if both else TimedBackend)(backend, observers)
    return cast(Backend, wrapper)

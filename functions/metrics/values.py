"""Cheap values behind prometheus_client's instruments, for the worker's per-task path.

prometheus_client guards every value with a lock (and, in multiprocess mode, writes it to an mmap file
on every increment), and Histogram.observe walks its buckets in Python: about 9 µs a task for the
five instruments a task moves. hexq counts on one thread (the event loop's), so `Values` swaps each
child's value objects for plain floats and observes by bisection: about a sixth of that.

- One process (`hexq worker`, `hexq poller`, `hexq api`): `Plain` values, read by the scrape as they are.
- Multiprocess (`hexq serve`): `Buffered` values count in memory, and a daemon thread adds what they
  gained to prometheus_client's file-backed values every `interval` seconds (and at exit), so a scrape
  sees a worker's counts within about a second.

This reaches into prometheus_client's children (`_value`, `_sum`, `_buckets`, `_upper_bounds`), which
have kept these names since 0.4; a child without them is moved through its public methods instead.
"""

from __future__ import annotations

import atexit
import threading
from bisect import bisect_left
from typing import Any, Protocol


class Value(Protocol):
    def inc(self, amount: float) -> None: ...


class Observer(Protocol):
    def observe(self, amount: float) -> None: ...


class Plain:
    """A float without a lock: written by one thread (the event loop's), read by the scrape."""

    __slots__ = ("_value",)
    _multiprocess = False

    def __init__(self, value: float = 0.0) -> None:
        self._value = value

    def inc(self, amount: float) -> None:
        self._value += amount

    def set(self, value: float, timestamp: float | None = None) -> None:
        self._value = value

    def get(self) -> float:
        return self._value

    def set_exemplar(self, exemplar: object) -> None:
        return None

    def get_exemplar(self) -> None:
        return None


class Buffered(Plain):
    """Counts in memory; `flush` adds the gain since the last flush to the file-backed value."""

    __slots__ = ("_sent", "_target")

    def __init__(self, target: Any) -> None:
        super().__init__(0.0)
        self._target = target
        self._sent = 0.0

    def flush(self) -> None:
        value = self._value  # one read: the loop thread may add more meanwhile, counted at the next flush
        if value != self._sent:
            self._target.inc(value - self._sent)
            self._sent = value

    def get(self) -> float:
        return float(self._target.get()) + self._value - self._sent


class FastHistogram:
    """Histogram.observe by bisection over the child's bounds, on plain values."""

    __slots__ = ("_bounds", "_buckets", "_sum")

    def __init__(self, bounds: list[float], buckets: list[Plain], total: Plain) -> None:
        self._bounds = bounds
        self._buckets = buckets
        self._sum = total

    def observe(self, amount: float) -> None:
        self._sum.inc(amount)
        self._buckets[bisect_left(self._bounds, amount)].inc(1.0)  # the last bound is +Inf


class _Counted:
    """A child without the expected internals: moved through its public method."""

    __slots__ = ("inc",)

    def __init__(self, child: Any) -> None:
        self.inc = child.inc


class Values:
    """Turns prometheus_client children into cheap ones (see the module doc); `flush` and `close` matter
    only in multiprocess mode."""

    def __init__(self, interval: float = 1.0) -> None:
        self._buffered: list[Buffered] = []
        self._lock = threading.Lock()
        self._interval = interval
        self._flusher: threading.Thread | None = None
        self._stop = threading.Event()

    def counter(self, child: Any) -> Value:
        value = getattr(child, "_value", None)
        if value is None:
            return _Counted(child)
        if not isinstance(value, Plain):
            value = child._value = self._wrap(value)
        return value

    def histogram(self, child: Any) -> Observer:
        buckets, total, bounds = (getattr(child, name, None) for name in ("_buckets", "_sum", "_upper_bounds"))
        if buckets is None or total is None or bounds is None:
            return child  # type: ignore[no-any-return]
        if not isinstance(total, Plain):
            child._sum = total = self._wrap(total)
            child._buckets = buckets = [self._wrap(b) for b in buckets]
        return FastHistogram(bounds, buckets, total)

    def _wrap(self, value: Any) -> Plain:
        if not getattr(value, "_multiprocess", False):
            return Plain(float(value.get()))
        buffered = Buffered(value)
        with self._lock:
            self._buffered.append(buffered)
            if self._flusher is None:
                self._start()
        return buffered

    def _start(self) -> None:
        self._flusher = threading.Thread(target=self._flush_every, name="hexq-metrics-flush", daemon=True)
        self._flusher.start()
        atexit.register(self.flush)

    def _flush_every(self) -> None:
        while not self._stop.wait(self._interval):
            self.flush()

    def flush(self) -> None:
        """Add every buffered gain to its file-backed value (multiprocess mode; else nothing to do)."""
        with self._lock:
            for value in self._buffered:
                value.flush()

    def close(self) -> None:
        self._stop.set()
        self.flush()

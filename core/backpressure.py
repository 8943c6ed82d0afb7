"""Back pressure: optional per-queue caps on the backlog (queued tasks) and on the oldest queued task's age.

Past a cap, a submit to that queue is refused with Overloaded (HTTP 503 `overloaded`) and a Retry-After
worked out from the queue's measured drain rate; that is the whole system saying "slow down", unlike 429,
which is one caller's key or tenant at its own limit.

The check must cost a submit no backend round trip, so each process keeps a view of every queue (backlog,
oldest age, drain rate) read from the backend's stats at most once per `interval` (BackPressure below): a
submit that finds the view stale starts a read in the background and is judged on the view as it is (only
the very first submit waits for a view), and the check itself is a dict lookup. The caps are therefore
soft: the backlog can pass one by what other processes accept between two reads (this process counts its
own accepted tasks into its view).

The drain rate of a queue is a lower bound, kept over a window of samples: the larger of (a) how much the
queue shrank, plus what this process put into it, and (b) the backend's count of finished tasks grown since
the last sample, shared among the queues in proportion to their running tasks. Both undercount (other
processes' submits; finished tasks purged by retention), so Retry-After errs long; it is clamped to 1-60 s.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from hexq.core.errors import ConfigurationError, Overloaded, ValidationError
from hexq.core.model import TERMINAL, Stats, Task, TaskStatus
from hexq.core.registry import check_name

log = logging.getLogger("hexq.backpressure")

MIN_RETRY = 1.0
MAX_RETRY = 60.0
# Retry-After while tasks of the queue run but none has been seen to finish yet (workers just started, or
# tasks longer than the window): the drain is unknown, not zero.
UNMEASURED_RETRY = 5.0


@dataclass(frozen=True, slots=True)
class Caps:
    """A limit per queue: `by_queue`, else `default`. 0 means no limit."""

    default: float = 0.0
    by_queue: Mapping[str, float] = field(default_factory=dict)

    def of(self, queue: str) -> float:
        return self.by_queue.get(queue, self.default)

    @property
    def any(self) -> bool:
        return self.default > 0 or any(cap > 0 for cap in self.by_queue.values())


def parse_caps(text: str, name: str, *, integer: bool) -> Caps:
    """Caps from their setting: comma-separated entries, each `queue=N` or a bare N for every other queue;
    0 lifts the cap (`5000,bulk=0`: 5000 for all but `bulk`). Empty: no caps.

    Raises ConfigurationError naming `name` (the variable) and the entry at fault.
    """
    default: float | None = None
    by_queue: dict[str, float] = {}
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        queue, _, raw = entry.rpartition("=")
        value = _cap_value(raw.strip(), name, entry, integer)
        if not queue:
            if default is not None:
                raise ConfigurationError(f"{name} gives two caps for every queue ({entry!r}); give one, "
                                         "and queue=N for the others")
            default = value
            continue
        queue = queue.strip()
        try:
            check_name(queue, "queue")
        except ValidationError as exc:
            raise ConfigurationError(f"{name}: {entry!r} names no valid queue: {exc}") from None
        if queue in by_queue:
            raise ConfigurationError(f"{name} gives queue {queue!r} two caps")
        by_queue[queue] = value
    return Caps(default or 0.0, by_queue)


def _cap_value(raw: str, name: str, entry: str, integer: bool) -> float:
    what = "a whole number of tasks" if integer else "a number of seconds"
    example = "10000,emails=500" if integer else "60,emails=5"
    try:
        value = float(int(raw)) if integer else float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ConfigurationError(f"{name}: {entry!r} is not a cap; each entry is queue=N or N, N {what} "
                                 f"(0: no cap), e.g. {example}")
    return value


@dataclass(frozen=True, slots=True)
class Policy:
    """The caps of every queue: on its backlog (queued tasks) and on its oldest queued task's age (seconds)."""

    max_backlog: Caps = Caps()
    max_oldest_age: Caps = Caps()

    @property
    def active(self) -> bool:
        return self.max_backlog.any or self.max_oldest_age.any

    def capped(self, queue: str) -> bool:
        return self.max_backlog.of(queue) > 0 or self.max_oldest_age.of(queue) > 0

    def named(self) -> set[str]:
        return {*self.max_backlog.by_queue, *self.max_oldest_age.by_queue}


NO_CAPS = Policy()


@dataclass(frozen=True, slots=True)
class Load:
    """One queue as last sampled: queued tasks, seconds its oldest has waited, tasks leaving per second, and
    tasks running."""

    backlog: int = 0
    oldest_age: float = 0.0
    drain_rate: float = 0.0
    running: int = 0


@dataclass(frozen=True, slots=True)
class Pressure:
    """A queue judged against its caps. `reason`: "backlog" or "oldest_age" when overloaded, else None;
    `retry_after`: seconds until it should be under its caps again (0 when it is)."""

    queue: str
    load: Load
    max_backlog: int
    max_oldest_age: float
    reason: str | None = None
    retry_after: float = 0.0

    @property
    def overloaded(self) -> bool:
        return self.reason is not None

    def error(self) -> Overloaded:
        return Overloaded(self.queue, self.reason or "backlog", backlog=self.load.backlog,
                          max_backlog=self.max_backlog, oldest_age=self.load.oldest_age,
                          max_oldest_age=self.max_oldest_age, retry_after=self.retry_after)


def judge(queue: str, load: Load, policy: Policy) -> Pressure:
    """The queue's pressure: overloaded when its backlog is at or over its cap, or its oldest task has waited
    at least its cap. Retry-After is the time to drain below the cap at the measured rate: for the backlog,
    (backlog - cap + 1) / rate; for the age, the expected wait (backlog / rate) less the cap. With no drain
    measured, MAX_RETRY if nothing of the queue runs, else UNMEASURED_RETRY. Clamped to MIN_RETRY..MAX_RETRY."""
    cap, age_cap = int(policy.max_backlog.of(queue)), policy.max_oldest_age.of(queue)
    waits: dict[str, float] = {}
    if cap and load.backlog >= cap:
        waits["backlog"] = _seconds(load.backlog - cap + 1, load)
    if age_cap and load.oldest_age >= age_cap:
        waits["oldest_age"] = _seconds(load.backlog, load) - age_cap
    if not waits:
        return Pressure(queue, load, cap, age_cap)
    reason = max(waits, key=lambda k: waits[k])
    return Pressure(queue, load, cap, age_cap, reason, min(MAX_RETRY, max(MIN_RETRY, waits[reason])))


def _seconds(tasks: float, load: Load) -> float:
    if load.drain_rate > 0:
        return tasks / load.drain_rate
    return UNMEASURED_RETRY if load.running else MAX_RETRY  # nothing running: nothing drains


@dataclass(frozen=True, slots=True)
class Sample:
    """What the drain meter reads from one Stats: queued and running tasks per queue, and finished tasks."""

    backlog: Mapping[str, int]
    running: Mapping[str, int]
    finished: int
    oldest_age: Mapping[str, float]

    @classmethod
    def of(cls, stats: Stats) -> Sample:
        running: dict[str, int] = {}
        for (queue, _, state), n in stats.depth.items():
            if state == TaskStatus.RUNNING:
                running[queue] = running.get(queue, 0) + n
        oldest: dict[str, float] = {}
        for (queue, _), age in stats.oldest_age.items():
            oldest[queue] = max(oldest.get(queue, 0.0), age)
        return cls(backlog={queue: sum(levels.values()) for queue, levels in stats.queued.items()}, running=running,
                   finished=sum(stats.by_status.get(status, 0) for status in TERMINAL), oldest_age=oldest)


class DrainMeter:
    """Tasks leaving each queue per second, over the samples of the last `window` seconds (module docstring)."""

    def __init__(self, window: float = 10.0) -> None:
        self.window = window
        self._last: tuple[float, Sample] | None = None
        self._drained: deque[tuple[float, float, dict[str, float]]] = deque()  # (from, to, drained per queue)

    def observe(self, at: float, sample: Sample, arrived: Mapping[str, int]) -> None:
        """Add a sample taken at `at` (monotonic seconds); `arrived`: tasks this process queued since the last."""
        if self._last is not None and at > self._last[0]:
            since, last = self._last
            self._drained.append((since, at, _drained(last, sample, arrived)))
        self._last = (at, sample)
        # The latest interval stays, however long: reads are as sparse as submits (none for a minute, then one).
        while len(self._drained) > 1 and self._drained[0][0] < at - self.window:
            self._drained.popleft()

    def rate(self, queue: str) -> float:
        if not self._drained:
            return 0.0
        span = self._drained[-1][1] - self._drained[0][0]
        return sum(drained.get(queue, 0.0) for _, _, drained in self._drained) / span


def _drained(last: Sample, now: Sample, arrived: Mapping[str, int]) -> dict[str, float]:
    finished = max(0, now.finished - last.finished)  # negative when retention purged more than finished
    running = sum(now.running.values())
    drained = {}
    for queue in {*last.backlog, *now.backlog, *now.running}:
        shrank = last.backlog.get(queue, 0) + arrived.get(queue, 0) - now.backlog.get(queue, 0)
        share = finished * now.running.get(queue, 0) / running if running else 0.0
        drained[queue] = max(0.0, float(shrank), share)
    return drained


Read = Callable[[], Awaitable[Stats]]


class BackPressure:
    """Admission of submits against the caps, on this process's view of the queues.

    Parameters: policy; read, the backend's stats (TaskStore.stats); monotonic, the clock's; interval, the
    most often the view is read (seconds); window, the seconds of samples the drain rate is measured over;
    queues, the queues this process knows of (listed by `pressures` even while empty).
    A failed read leaves the last view in place (or none: every submit is admitted), and is tried again after
    `interval`: back pressure must not turn a slow stats query into refused submits.

    Each read judges every queue once; between reads a submit only looks its queue up among the overloaded
    ones, and an accepted task takes one from its queue's room under the backlog cap (about a microsecond).
    Reads run in the background (one at a time), so no submit but the first waits for the backend's stats.
    """

    def __init__(self, policy: Policy, read: Read, monotonic: Callable[[], float], *, interval: float = 1.0,
                 window: float = 10.0, queues: Iterable[str] = ()) -> None:
        self.policy = policy
        self._known = frozenset(queues)
        self.interval = interval
        self._read = read
        self._monotonic = monotonic
        self._meter = DrainMeter(window)
        self._loads: dict[str, Load] = {}
        self._arrived: dict[str, int] = {}  # tasks this process queued since the last read
        self._room: dict[str, float] = {}  # tasks each queue may still take before its backlog cap
        self._overloaded: dict[str, Pressure] = {}
        self._read_at = -math.inf
        self._reading: asyncio.Future[None] | None = None

    async def admit(self, tasks: Sequence[Task]) -> None:
        """Raise Overloaded, for the first queue of `tasks` past a cap, and admit none of them."""
        if self._monotonic() - self._read_at >= self.interval:
            reading = self._read_soon()
            if self._read_at == -math.inf:
                await asyncio.shield(reading)  # no view yet: the first submits wait for one
        if self._overloaded:
            for task in tasks:
                pressure = self._overloaded.get(task.queue)
                if pressure is not None:
                    raise pressure.error()

    def accepted(self, tasks: Iterable[Task]) -> None:
        """Count tasks this process queued into its view until the next read (other processes' show up then)."""
        for task in tasks:
            if task.status is not TaskStatus.QUEUED:
                continue  # a delayed task is not in the backlog yet
            queue = task.queue
            self._arrived[queue] = self._arrived.get(queue, 0) + 1
            room = self._room.get(queue)
            if room is None:
                room = self._room_of(queue, self._loads.get(queue, Load()))
            self._room[queue] = room - 1
            if room <= 1:
                self._overloaded[queue] = judge(queue, self._estimate(queue), self.policy)

    async def pressures(self, queues: Iterable[str] = ()) -> list[Pressure]:
        """Every capped queue that holds tasks, is named by a cap or in `queues`, judged now (reading the view
        if it is stale)."""
        if self._monotonic() - self._read_at >= self.interval:
            await asyncio.shield(self._read_soon())
        names = {*queues, *self._known, *self._loads, *self._arrived, *self.policy.named()}
        return [judge(queue, self._estimate(queue), self.policy) for queue in sorted(names)
                if self.policy.capped(queue)]

    def _room_of(self, queue: str, load: Load) -> float:
        cap = self.policy.max_backlog.of(queue)
        return cap - load.backlog if cap else math.inf

    def _estimate(self, queue: str) -> Load:
        load = self._loads.get(queue, Load(drain_rate=self._meter.rate(queue)))
        arrived = self._arrived.get(queue, 0)
        return replace(load, backlog=load.backlog + arrived) if arrived else load

    def _read_soon(self) -> asyncio.Future[None]:
        """The read under way, or a new one started in the background (the view is stale)."""
        reading = self._reading
        # A read left on another loop (one that asyncio.run closed, say) would never finish here: start anew.
        if reading is None or reading.done() or reading.get_loop() is not asyncio.get_running_loop():
            reading = self._reading = asyncio.ensure_future(self._refresh(self._monotonic()))
        return reading

    async def _refresh(self, started: float) -> None:
        # What this process accepts while the read is in flight may or may not be in it: it is counted on top
        # (refusing a little early, never late).
        arrived, self._arrived = self._arrived, {}
        try:
            stats = await self._read()
        except BaseException as exc:  # BackendUnavailable and the like: the enqueue will say so if it matters
            for queue, n in arrived.items():  # still this process's, until a read counts them
                self._arrived[queue] = self._arrived.get(queue, 0) + n
            if not isinstance(exc, Exception):
                raise  # cancelled (its loop is closing)
            log.warning("back pressure: the stats read failed (%s: %s); keeping the last view",
                        type(exc).__name__, exc)
            self._read_at = started
            return
        sample = Sample.of(stats)
        self._meter.observe(started, sample, arrived)
        names = {*sample.backlog, *sample.running, *self._known, *self.policy.named()}
        self._loads = {queue: Load(sample.backlog.get(queue, 0), sample.oldest_age.get(queue, 0.0),
                                   self._meter.rate(queue), sample.running.get(queue, 0)) for queue in names}
        self._room = {queue: self._room_of(queue, self._estimate(queue)) for queue in self._loads}
        judged = (judge(queue, self._estimate(queue), self.policy) for queue in self._loads)
        self._overloaded = {pressure.queue: pressure for pressure in judged if pressure.overloaded}
        self._read_at = started

"""The state gauges, read from the backend when Prometheus scrapes: the same on every API replica.

prometheus_client's collectors are synchronous and the backend is async, so a scrape first awaits
`read_state` (ping, stats, the worker registry) and then renders a `StateCollector` over what it read.
These gauges never go through multiprocess files: only the process that answers /metrics reads them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from hexq.core.backpressure import NO_CAPS, Load, Policy, Sample, judge
from hexq.core.breaker import BreakerState, Circuit
from hexq.core.model import STATES, Priority, Stats
from hexq.core.ports import Backend
from hexq.functions.metrics.events import PRIORITIES

log = logging.getLogger("hexq.metrics")
CIRCUIT_VALUES = {Circuit.CLOSED: 0.0, Circuit.HALF_OPEN: 1.0, Circuit.OPEN: 2.0}


@dataclass(frozen=True, slots=True)
class State:
    """What one scrape read from the backend. stats is None when the backend did not answer; workers is
    None when the backend keeps no worker registry."""

    up: bool
    stats: Stats | None = None
    workers: int | None = None
    queues: tuple[str, ...] = field(default=())
    breakers: tuple[BreakerState, ...] = ()


async def read_state(backend: Backend, queues: Iterable[str]) -> State:
    """Ping, then stats and live workers. Never raises: a backend that fails is `up` 0 and nothing more."""
    known = tuple(dict.fromkeys(("default", *queues)))
    try:
        await backend.ping()
        stats = await backend.stats()
    except Exception as exc:  # BackendUnavailable, or anything a broken backend raises: the scrape still answers
        log.warning("metrics: the backend did not answer the scrape (%s: %s)", type(exc).__name__, exc)
        return State(False, queues=known)
    return State(True, stats, await _live_workers(backend), known, await _breakers(backend))


async def _breakers(backend: Backend) -> tuple[BreakerState, ...]:
    try:
        return tuple((await backend.breaker_states())[1])
    except Exception as exc:
        log.warning("metrics: the breaker states did not answer (%s: %s)", type(exc).__name__, exc)
        return ()


async def _live_workers(backend: Backend) -> int | None:
    workers = getattr(backend, "workers", None)  # the WorkerRegistry port, where the backend has it
    if not callable(workers):
        return None
    try:
        return len(await workers())
    except Exception as exc:
        log.warning("metrics: the worker registry did not answer (%s: %s)", type(exc).__name__, exc)
        return None


class StateCollector(Collector):
    """The gauges of one State. Every known queue appears with every priority and state (0 when empty), so
    a queue that empties reads 0 rather than vanishing (which would hide it from rate() and alerts)."""

    def __init__(self, state: State, policy: Policy = NO_CAPS) -> None:
        self._state = state
        self._policy = policy  # the back-pressure caps (HEXQ_MAX_BACKLOG, HEXQ_MAX_OLDEST_AGE)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        state = self._state
        yield GaugeMetricFamily("hexq_backend_up", "1 when the backend answered this scrape, else 0",
                                value=1.0 if state.up else 0.0)
        if state.workers is not None:
            yield GaugeMetricFamily("hexq_workers_live", "Workers whose last heartbeat is within its time to live",
                                    value=float(state.workers))
        if state.breakers:
            yield _family("hexq_circuit_state", "Circuit breakers as stored: 0 closed, 1 half_open, 2 open",
                          ["breaker"], {(b.name,): CIRCUIT_VALUES[b.circuit] for b in state.breakers})
        if state.stats is None:
            return
        depth = _depth(state.stats, state.queues)
        yield _family("hexq_queue_depth", "Tasks by queue, priority and state (queued, running, scheduled, dead)",
                      ["queue", "priority", "state"], {(q, PRIORITIES[p], s): n for (q, p, s), n in depth.items()})
        yield _family("hexq_queue_oldest_age_seconds", "Seconds the oldest queued task has been eligible to run",
                      ["queue", "priority"], _oldest(state.stats, state.queues))
        dead: dict[tuple[str, ...], float] = {}
        for (queue, _, s), n in depth.items():
            if s == "dead":
                dead[(queue,)] = dead.get((queue,), 0.0) + n
        yield _family("hexq_dead_letter_tasks", "Tasks in the dead-letter queue", ["queue"], dead)
        yield from _pressure(state.stats, state.queues, self._policy)


def _pressure(stats: Stats, queues: Iterable[str], policy: Policy) -> Iterator[GaugeMetricFamily]:
    """Back pressure judged on this scrape's stats (core/backpressure.py): 1 while a submit to the queue would
    be refused 503 overloaded; and the caps, for the capped queues, to draw beside the depth and the age."""
    sample = Sample.of(stats)
    names = sorted({*queues, *sample.backlog, *policy.named()})
    loads = {q: Load(sample.backlog.get(q, 0), sample.oldest_age.get(q, 0.0)) for q in names}
    yield _family("hexq_queue_overloaded", "1 while the queue is past a back-pressure cap: submits get 503 overloaded",
                  ["queue"], {(q,): float(judge(q, loads[q], policy).overloaded) for q in names})
    yield _family("hexq_queue_backlog_cap", "Queued tasks past which submits to the queue are refused "
                  "(HEXQ_MAX_BACKLOG)",
                  ["queue"], {(q,): policy.max_backlog.of(q) for q in names if policy.max_backlog.of(q)})
    yield _family("hexq_queue_oldest_age_cap_seconds", "Seconds the oldest queued task may wait before submits "
                  "to the queue are refused (HEXQ_MAX_OLDEST_AGE)", ["queue"],
                  {(q,): policy.max_oldest_age.of(q) for q in names if policy.max_oldest_age.of(q)})


def _depth(stats: Stats, queues: Iterable[str]) -> dict[tuple[str, Priority, str], float]:
    depth: dict[tuple[str, Priority, str], float] = {(q, p, s): 0.0 for q in queues for p in Priority for s in STATES}
    for (queue, priority, s), n in stats.depth.items():
        depth[(queue, Priority(priority), s)] = float(n)
    return depth


def _oldest(stats: Stats, queues: Iterable[str]) -> dict[tuple[str, ...], float]:
    ages: dict[tuple[str, ...], float] = {(q, PRIORITIES[p]): 0.0 for q in queues for p in Priority}
    for (queue, priority), age in stats.oldest_age.items():
        ages[(queue, PRIORITIES[Priority(priority)])] = max(0.0, float(age))
    return ages


def _family(name: str, help: str, labels: list[str], values: dict[tuple[str, ...], float]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, help, labels=labels)
    for key, value in values.items():
        family.add_metric(list(key), value)
    return family

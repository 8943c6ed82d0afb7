"""One process's metrics: its registry, the task-event observer, the backend timer and the HTTP instruments.

`process_metrics(settings, registry)` is what the composition root calls (None with HEXQ_METRICS=off). Each
call makes a registry of its own, so tests may bootstrap many containers in one process. In `hexq serve`'s
multiprocess mode (PROMETHEUS_MULTIPROC_DIR set before prometheus_client was imported) the values go to
files that the /metrics scrape merges; see functions/metrics/multiprocess.py.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator

import prometheus_client
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from hexq import __version__
from hexq.core.ports import Backend
from hexq.core.registry import Registry
from hexq.functions.metrics.events import Labels, PrometheusEvents
from hexq.functions.metrics.instruments import HttpInstruments, TaskInstruments, backend_histogram
from hexq.functions.metrics.timing import timed
from hexq.functions.metrics.values import Values
from hexq.functions.settings import Settings

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# hexq_submit_rejections_total's reasons (core.services.rejection and the API's edge refusals), exported at 0.
REASONS = ("validation", "unknown_type", "queue_full", "overloaded", "idempotency_mismatch", "backend_unavailable",
           "rate_limited", "body_too_large", "bad_json", "unauthorized", "forbidden")


class BuildInfo(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("hexq_build_info", "Always 1; the hexq version in a label", labels=["version"])
        family.add_metric([__version__], 1.0)
        yield family


class Metrics:
    """The metrics of this process. `events` observes tasks; `timed` wraps the backend; `http` is made for
    the process that serves the API, on first use."""

    def __init__(self, types: Registry, queues: tuple[str, ...]) -> None:
        # A _created series per child doubles the series for nothing.
        prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(BuildInfo())
        self.values = Values()
        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        labels = Labels((spec.name for spec in types), (*queues, *types.queues()))
        self.events = PrometheusEvents(TaskInstruments.create(self.registry), labels, self.values)
        self.events.zero(((spec.name, spec.queue) for spec in types), REASONS)
        self._backend_ops = backend_histogram(self.registry)

    def timed(self, backend: Backend) -> Backend:
        return timed(backend, self._backend_ops, self.values)

    @functools.cached_property
    def http(self) -> HttpInstruments:
        return HttpInstruments.create(self.registry)


def process_metrics(settings: Settings, types: Registry) -> Metrics | None:
    """This process's metrics as the settings ask (HEXQ_METRICS=off: None)."""
    return Metrics(types, settings.queues) if settings.metrics_on else None

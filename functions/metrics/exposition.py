"""Serving metrics: the /metrics scrape of the API, and a worker's or poller's own port.

A scrape awaits the backend state first (functions/metrics/state.py), then renders, in the format the
scraper asks for (OpenMetrics when its Accept header says so): in one process, the process's own registry;
in `hexq serve`'s multiprocess mode, every process's files merged (MultiProcessCollector) plus the build info.
The state gauges are added by the scraping process only, never written to the multiprocess files.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import exposition, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry

from hexq.core.backpressure import NO_CAPS, Policy
from hexq.core.errors import ConfigurationError
from hexq.core.ports import Backend
from hexq.functions.metrics.process import MULTIPROC_ENV, BuildInfo, Metrics
from hexq.functions.metrics.state import StateCollector, read_state


class _Scrape:
    """What generate_latest reads: the collectors of one scrape, in order."""

    def __init__(self, collectors: Iterable[Collector | CollectorRegistry]) -> None:
        self._collectors = list(collectors)

    def collect(self) -> Iterator[Any]:
        for collector in self._collectors:
            yield from collector.collect()


async def scrape(metrics: Metrics | None, backend: Backend, queues: Iterable[str],
                 accept: str | None, policy: Policy = NO_CAPS) -> tuple[bytes, str]:
    """The body and content type of one scrape of the API's /metrics; `policy`: the back-pressure caps."""
    state = StateCollector(await read_state(backend, queues), policy)
    collectors = [*counted(metrics), state]
    encoder, content_type = exposition.choose_encoder(accept or "")
    return encoder(_Scrape(collectors)), content_type


def counted(metrics: Metrics | None) -> list[Collector | CollectorRegistry]:
    """What this process counted: its registry, or in multiprocess mode every process's files merged (this
    process's buffered counts flushed first) and the build info. Nothing with metrics off."""
    if metrics is None:
        return []
    if not metrics.multiprocess:
        return [metrics.registry]
    metrics.values.flush()  # this process's own counts, up to now
    merged = CollectorRegistry()
    MultiProcessCollector(merged, os.environ[MULTIPROC_ENV])  # type: ignore[no-untyped-call]
    return [merged, BuildInfo()]


def serve_own(metrics: Metrics | None, host: str, port: int) -> Any | None:
    """A worker's or poller's counters on http://host:port/metrics, from a thread; None when port is 0 (or
    metrics are off). The server and its thread live as long as the process."""
    if port == 0:
        return None
    if metrics is None:
        raise ConfigurationError("--metrics-port needs metrics on (HEXQ_METRICS=on)")
    try:
        server, _ = start_http_server(port, host, registry=metrics.registry)
    except OSError as exc:
        raise ConfigurationError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from None
    return server


def stop_own(server: Any | None) -> None:
    if server is not None:
        threading.Thread(target=server.shutdown, daemon=True).start()

"""`hexq serve`'s multiprocess mode: the API process and its pool of worker processes count into files.

prometheus_client decides at its import whether values live in memory or in mmap files under
PROMETHEUS_MULTIPROC_DIR, so `shared_directory()` must run before anything imports it: it makes a fresh
directory, sets the variable (spawned pool processes inherit it) and removes both at exit. The /metrics
scrape then merges every process's files (functions/metrics/exposition.py). Only counters and histograms
are written there; the state gauges are read by the scraping process, so no gauge needs a multiprocess
mode and no dead process's gauge lingers (counts of a process that exited stay in the totals, as they should).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator

from hexq.core.errors import ConfigurationError

ENV = "PROMETHEUS_MULTIPROC_DIR"


@contextlib.contextmanager
def shared_directory(enabled: bool = True) -> Iterator[str | None]:
    """While inside, this process and the processes it spawns count into one fresh directory."""
    if not enabled:
        yield None
        return
    if "prometheus_client" in sys.modules and not os.environ.get(ENV):
        raise ConfigurationError("prometheus_client was imported before hexq serve chose its multiprocess mode")
    before = os.environ.get(ENV)
    path = tempfile.mkdtemp(prefix="hexq-metrics-")
    os.environ[ENV] = path
    try:
        yield path
    finally:
        if before is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = before
        shutil.rmtree(path, ignore_errors=True)

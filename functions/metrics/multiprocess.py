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
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator

ENV = "PROMETHEUS_MULTIPROC_DIR"
log = logging.getLogger("hexq.metrics")


@contextlib.contextmanager
def shared_directory(enabled: bool = True) -> Iterator[str | None]:
    """While inside, this process and the processes it spawns count into one fresh directory."""
    if not enabled:
        yield None
        return
    if "prometheus_client" in sys.modules and not os.environ.get(ENV):
        # Too late for this process (serve run from inside a program that imported it, as the tests do): its
        # /metrics then shows what this process counts, and the pool's processes keep theirs to themselves.
        log.warning("prometheus_client was imported before hexq serve could choose its multiprocess mode: "
                    "/metrics will not include the worker processes' counts")
        yield None
        return
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

"""AWS Lambda entry point for the poller, run by an EventBridge schedule (template.yaml, every minute).

Each call is one poller tick (hexq.core.poller): promote due tasks, recover expired leases, fire cron
schedules, purge old results, then start ceil(backlog / batch) worker invocations, at most
HEXQ_MAX_INVOCATIONS (or HEXQ_WORKERS), as asynchronous invokes of the worker function named by
HEXQ_WORKER_FUNCTION (hexq.functions.lambda_invoker). Returns the TickReport as a dict.

With HEXQ_POLLER_INVOKES=false the tick does the housekeeping only: template.yaml sets it for
Backend=aws, where the SQS event sources run the worker function, so the queues have one consumer.

Like the worker, it keeps one container and one event loop per process.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from hexq.core.ports import Invoker
from hexq.functions.bootstrap import Container, bootstrap
from hexq.functions.emf import flush, on_lambda
from hexq.functions.settings import Settings

log = logging.getLogger("hexq.poller")


class PollerHandler:
    """The Lambda handler: `handler(event, context)` runs one tick; the event's content does not matter."""

    def __init__(self, container: Container, invoker: Invoker | None,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.container = container
        self.invoker = invoker
        self.loop = loop or asyncio.new_event_loop()

    def __call__(self, event: Mapping[str, Any], context: object) -> dict[str, Any]:
        try:
            report = asdict(self.loop.run_until_complete(self.container.poller(self.invoker).tick()))
        finally:
            flush(self.container.events)  # this tick's metrics, before Lambda freezes the process
        log.info("tick", extra=report)
        return report

    def close(self) -> None:
        """Close the backend and the loop (Lambda never needs this; tests and scripts do)."""
        self.loop.run_until_complete(self.container.backend.close())
        self.loop.close()


def make_handler(container: Container) -> PollerHandler:
    """One tick per call; the container says what starts the workers (HEXQ_WORKER_FUNCTION), or that the
    SQS event sources run them (HEXQ_POLLER_INVOKES=false: housekeeping only)."""
    return PollerHandler(container, container.lambda_invoker())


_settings = Settings.from_env()
handler = make_handler(bootstrap(_settings, events=on_lambda(_settings), serving=True))

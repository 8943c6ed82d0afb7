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
import os
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from hexq.core.errors import ConfigurationError
from hexq.core.ports import Invoker
from hexq.functions.bootstrap import Container, bootstrap
from hexq.functions.lambda_invoker import LambdaInvoker
from hexq.functions.settings import Settings

log = logging.getLogger("hexq.poller")

WORKER_FUNCTION_ENV = "HEXQ_WORKER_FUNCTION"
INVOKES_ENV = "HEXQ_POLLER_INVOKES"


class PollerHandler:
    """The Lambda handler: `handler(event, context)` runs one tick; the event's content does not matter."""

    def __init__(self, container: Container, invoker: Invoker | None,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.container = container
        self.invoker = invoker
        self.loop = loop or asyncio.new_event_loop()

    def __call__(self, event: Mapping[str, Any], context: object) -> dict[str, Any]:
        report = asdict(self.loop.run_until_complete(self.container.poller(self.invoker).tick()))
        log.info("tick", extra=report)
        return report

    def close(self) -> None:
        """Close the backend and the loop (Lambda never needs this; tests and scripts do)."""
        self.loop.run_until_complete(self.container.backend.close())
        self.loop.close()


def worker_function(env: Mapping[str, str]) -> str:
    name = env.get(WORKER_FUNCTION_ENV, "").strip()
    if not name:
        raise ConfigurationError(f"{WORKER_FUNCTION_ENV} must name the worker Lambda function the poller invokes")
    return name


def invokes(env: Mapping[str, str]) -> bool:
    value = env.get(INVOKES_ENV, "true").strip().lower()
    if value not in ("true", "false"):
        raise ConfigurationError(f"{INVOKES_ENV} must be true or false, not {value!r}")
    return value == "true"


def make_handler(container: Container, env: Mapping[str, str] | None = None) -> PollerHandler:
    env = os.environ if env is None else env
    if not invokes(env):
        return PollerHandler(container, None)  # something else (SQS event sources) runs the workers
    invoker = LambdaInvoker(worker_function(env), cap=container.settings.invocation_cap)
    return PollerHandler(container, invoker)


handler = make_handler(bootstrap(Settings.from_env()))

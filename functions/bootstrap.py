"""The composition root: builds the backend from its URL and wires the services.

Adapters are imported inside their branch, so a deployment carries only the driver it uses.
"""

from __future__ import annotations

import functools
import importlib
import os
import socket
import sys
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from hexq.core.auth import KeyRing
from hexq.core.backpressure import BackPressure
from hexq.core.breakers import BreakerService
from hexq.core.bulk import BulkService
from hexq.core.clock import SystemClock
from hexq.core.errors import ConfigurationError
from hexq.core.events import NO_EVENTS, Events
from hexq.core.poller import Poller, PollerConfig
from hexq.core.ports import Backend, Broker, Clock, Invoker
from hexq.core.queues import QueueService
from hexq.core.registry import Registry
from hexq.core.registry import registry as default_registry
from hexq.core.schedules import ScheduleService
from hexq.core.services import Limits, TaskService
from hexq.core.worker import Invocation, WorkerConfig
from hexq.functions.observers import serving_events
from hexq.functions.settings import Settings

if TYPE_CHECKING:
    from hexq.functions.metrics.process import Metrics


@dataclass
class Container:
    """Everything a process needs, built once from its Settings (bootstrap): no entry point reads the
    environment or a key file on its own."""

    settings: Settings
    backend: Backend
    registry: Registry
    clock: Clock
    tasks: TaskService
    schedules: ScheduleService
    events: Events = NO_EVENTS  # who hears of task events: logs, metrics (fan_out)
    metrics: Metrics | None = None  # this process's Prometheus metrics (a client's, or HEXQ_METRICS=off: None)

    @functools.cached_property
    def keys(self) -> KeyRing:
        """The API keys (HEXQ_API_KEYS and HEXQ_API_KEYS_FILE), read once, when a process that serves the API
        first asks; a bad entry is a ConfigurationError then."""
        from hexq.functions.auth import load_keys

        return load_keys(self.settings)

    @functools.cached_property
    def bulk(self) -> BulkService:
        """Cancel and replay every task that matches a filter (the API, the clients)."""
        return BulkService(self.tasks, self.backend, self.backend, self.clock)

    @functools.cached_property
    def breakers(self) -> BreakerService:
        """List circuit breakers, open and close them: what the API, the client and the CLI share."""
        return BreakerService(self.backend, self.registry)

    @functools.cached_property
    def queues(self) -> QueueService:
        """List, pause and resume queues: what the API, the client and the CLI share."""
        return QueueService(self.backend, self.backend)

    def lambda_invoker(self) -> Invoker | None:
        """The poller function's invoker: asynchronous invokes of HEXQ_WORKER_FUNCTION, or None when the SQS
        event sources run the workers (HEXQ_POLLER_INVOKES=false)."""
        if not self.settings.poller_invokes:
            return None
        if not self.settings.worker_function.strip():
            raise ConfigurationError("HEXQ_WORKER_FUNCTION must name the worker Lambda function the poller invokes")
        from hexq.functions.lambda_invoker import LambdaInvoker

        return LambdaInvoker(self.settings.worker_function.strip(), cap=self.settings.invocation_cap)

    def invocation(self, worker_id: str, *, broker: Broker | None = None, budget: float | None = None,
                   grace: float | None = None) -> Invocation:
        """The one place a worker invocation is built, so no entry point can leave a dependency out (the
        Lambda worker once built its own and lost the per-type rate limiter). `broker` wraps or replaces
        the backend's (an SQS batch's named tasks); `budget` and `grace` override the settings'."""
        s = self.settings
        config = WorkerConfig(worker_id=worker_id, queues=s.queues, concurrency=s.concurrency,
                              lease_seconds=s.lease_seconds, idle_wait=s.idle_wait,
                              budget=s.budget if budget is None else budget, grace=s.grace if grace is None else grace)
        return Invocation(broker or self.backend, self.registry, config, limiter=self.backend, events=self.events,
                          workers=self.backend, host_pid=(socket.gethostname(), os.getpid()), breakers=self.backend)

    def poller(self, invoker: Invoker | None = None) -> Poller:
        s = self.settings
        config = PollerConfig(interval=s.poll_interval, batch=s.batch, max_invocations=s.invocation_cap,
                              lease_seconds=s.lease_seconds, retention=s.retention)
        return Poller(self.backend, self.backend, self.schedules, config, invoker, events=self.events)


def bootstrap(settings: Settings, *, clock: Clock | None = None, registry: Registry | None = None,
              backend: Backend | None = None, events: Events | None = None, serving: bool = False) -> Container:
    """`serving`: the process runs tasks or serves the API (hexq serve and its pool, api, worker, poller, the
    Lambda functions), so it has metrics (HEXQ_METRICS) and tells of task events: the log lines and the metrics'
    observer (functions/observers.py). A client or a one-shot command does neither. `events` replaces the
    observers (a Lambda function's count into EMF lines instead: functions.emf.on_lambda)."""
    clock = clock or SystemClock()
    registry = registry if registry is not None else default_registry
    load_task_modules(settings.task_modules)
    settings = settings.serving(registry)  # the queues workers take from, now that the task types are known
    metrics = _metrics(settings, registry) if serving else None
    backend = backend or make_backend(settings.backend_url, clock, settings.weights)
    if metrics is not None:
        backend = metrics.timed(backend)
    if events is None:
        events = serving_events(settings, metrics) if serving else NO_EVENTS
    policy = settings.backpressure
    known = (*settings.queues, *registry.queues())
    pressure = BackPressure(policy, backend.stats, clock.monotonic, queues=known) if policy.active else None
    tasks = TaskService(backend, backend, registry, clock, Limits(max_queued_per_tenant=settings.max_queued_per_tenant),
                        events, pressure)
    schedules = ScheduleService(backend, tasks, registry, cron_next, events)
    return Container(settings, backend, registry, clock, tasks, schedules, events, metrics)


def _metrics(settings: Settings, registry: Registry) -> Metrics | None:
    if not settings.metrics_on:
        return None
    # Imported here, not at the top: `hexq serve` must choose prometheus_client's multiprocess mode before
    # anything imports it (functions/metrics/multiprocess.py), and HEXQ_METRICS=off needs none of it.
    from hexq.functions.metrics.process import process_metrics

    return process_metrics(settings, registry)


def make_backend(url: str, clock: Clock, weights: Mapping[str, int] | None = None) -> Backend:
    """The backend `url` names; `weights` are the fair-queue weights of tenants (HEXQ_TENANT_WEIGHTS), which every
    backend but aws applies to the tasks this process submits (aws has no fair queues: see the README)."""
    parts = urlsplit(url)
    match parts.scheme:
        case "memory":
            from hexq.adapters.memory import MemoryBackend

            return MemoryBackend(clock, weights=weights)
        case "sqlite":
            from hexq.adapters.sqlite import SQLiteBackend

            return SQLiteBackend(sqlite_path(url), clock, weights=weights)
        case "redis" | "rediss" | "redis+cluster":
            # No clock: Redis compares due times and leases with the server's TIME, not ours.
            from hexq.adapters.redis import from_url

            return from_url(url, weights=weights)
        case "aws":
            from hexq.adapters.aws import AwsBackend

            return AwsBackend.from_url(url, clock)
        case other:
            raise ConfigurationError(f"HEXQ_BACKEND has an unsupported scheme {other!r} in {url!r}; "
                                     "use memory://, sqlite:///path.db, redis://host:port/db, rediss://... "
                                     "redis+cluster://host:port,host:port or aws://?region=...&prefix=...")


def sqlite_path(url: str) -> str:
    """sqlite:///hexq.db is ./hexq.db; sqlite:////var/lib/hexq.db is absolute (SQLAlchemy's convention)."""
    path = url.removeprefix("sqlite://")
    if path.startswith("/"):
        path = path[1:]
    if not path:
        raise ConfigurationError(f"HEXQ_BACKEND {url!r} names no database file; e.g. sqlite:///hexq.db")
    return path


def require_database(url: str) -> None:
    """Refuse a sqlite:// URL whose file does not exist, for commands that only act on what is stored:
    opening it would create an empty database (in the wrong folder, typically) and answer from that."""
    if urlsplit(url).scheme != "sqlite":
        return
    path = Path(sqlite_path(url)).resolve()
    if not path.exists():
        raise ConfigurationError(f"no hexq database at {path}; start `hexq serve` there or pass --backend")


def load_task_modules(names: tuple[str, ...]) -> None:
    """Import the HEXQ_TASKS modules, looking in the current directory too (first on sys.path, where
    `python -m` and Celery's import_from_cwd put it): `hexq` run from a project folder finds its tasks.py.
    The directory is added only when a module is not found without it, so an application that makes a
    client of installed modules keeps its sys.path; once added it stays, so handlers' lazy imports of
    sibling modules work and spawned worker processes inherit it. Python's -P / PYTHONSAFEPATH, which
    asks for no such entry, is honoured.

    Raises ConfigurationError saying whether the module was not found or raised while importing.
    """
    for name in names:
        if not all(part.isidentifier() for part in name.split(".")):
            raise ConfigurationError(f"task module {name!r} (HEXQ_TASKS or --tasks) is not a module name; "
                                     "use dotted names such as mypkg.tasks, not file paths")
        try:
            _import(name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
                raise ConfigurationError(_not_found(name, exc.name)) from exc
            raise ConfigurationError(_raised(name, exc)) from exc  # the module itself imports something missing
        except Exception as exc:  # whatever the module's own code raised: SyntaxError, a failed setup, ...
            raise ConfigurationError(_raised(name, exc)) from exc


def _import(name: str) -> None:
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        missing_itself = exc.name is not None and (name == exc.name or name.startswith(exc.name + "."))
        if not missing_itself or not _current_directory_on_path():
            raise
        importlib.import_module(name)  # again, with the current directory on the path


def _current_directory_on_path() -> bool:
    """Put the current directory first on sys.path; False if it was there already (or must not be)."""
    cwd = _cwd()
    if cwd is None or sys.flags.safe_path or cwd in sys.path or "" in sys.path:
        return False
    sys.path.insert(0, cwd)
    importlib.invalidate_caches()
    return True


def _not_found(name: str, missing: str) -> str:
    cwd = _cwd()
    where = f"in {cwd} (the current directory) or on sys.path" if cwd and not sys.flags.safe_path else "on sys.path"
    what = "was not found" if missing == name else f"was not found: there is no package {missing!r}"
    hint = f" (a file {name} is the module {name.removesuffix('.py')})" if name.endswith(".py") else ""
    return (f"task module {name!r} (HEXQ_TASKS or --tasks) {what} {where}{hint}: "
            "run hexq from the folder that holds it, or set PYTHONPATH")


def _raised(name: str, exc: Exception) -> str:
    if isinstance(exc, SyntaxError) and exc.filename:
        at = f" at {exc.filename}, line {exc.lineno}"
    else:  # the deepest frame that is not the import machinery's
        frames = [f for f in traceback.extract_tb(exc.__traceback__)
                  if not f.filename.startswith("<frozen") and f.filename != importlib.__file__]
        at = f" at {frames[-1].filename}, line {frames[-1].lineno}" if frames else ""
    return f"task module {name!r} (HEXQ_TASKS or --tasks) raised while importing{at}: {type(exc).__name__}: {exc}"


def _cwd() -> str | None:
    try:
        return os.getcwd()
    except OSError:  # the folder was removed under the process
        return None


def cron_next(spec: str, after: float) -> float:
    """Next fire time of a five-field cron expression, in UTC."""
    from croniter import croniter

    try:
        start = datetime.fromtimestamp(after, UTC)
        return float(croniter(spec, start).get_next(float))
    except Exception as exc:  # croniter raises several unrelated types for a bad expression
        raise ValueError(str(exc)) from exc

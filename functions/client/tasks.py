"""`@task` for applications: registers the handler (hexq.core.registry) and gives it `.submit`.

The decorated object is still the plain function: call it in a test and it runs right there. Its
`.submit(payload, **options)` sends a task of its type through the default client, made on first use
from `configure(...)` or else from HEXQ_BACKEND (and HEXQ_API_KEY, HEXQ_TASKS), like the server.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, ParamSpec, Protocol, TypeVar, cast

from hexq.core.breaker import Breaker
from hexq.core.model import JSON, Priority
from hexq.core.registry import Validator, registry
from hexq.core.retry import RetryPolicy
from hexq.functions.client.sync import Client, TaskHandle
from hexq.functions.client.transport import PriorityLike
from hexq.functions.settings import Settings

P = ParamSpec("P")
R = TypeVar("R", covariant=True)


class TaskFunction(Protocol[P, R]):
    """A @task handler: the function itself, plus its type's name and `.submit`."""

    task_name: str

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...

    def submit(self, payload: Mapping[str, JSON] | None = None, *, priority: PriorityLike = Priority.NORMAL,
               queue: str | None = None, delay: float | None = None, run_at: float | datetime | None = None,
               max_attempts: int | None = None, timeout: float | None = None,
               idempotency_key: str | None = None) -> TaskHandle:
        """Submit a task of this type through the default client (see hexq.configure)."""
        ...


def task(name: str, *, max_attempts: int | None = None, timeout: float | None = None,
         retry: RetryPolicy | None = None, queue: str | None = None, validate: Validator | None = None,
         rate: str | None = None, concurrency: int | None = None, breaker: Breaker | None = None,
         max_deferrals: int | None = None) -> Callable[[Callable[P, R]], TaskFunction[P, R]]:
    """Register the decorated sync or async function as the handler of task type `name`.

    Options left out take hexq.core.registry's defaults: max_attempts 3, timeout 300 s, the default
    retry policy, queue "default", no validate function, no rate or concurrency limit, no circuit breaker
    (hexq.Breaker), and 10 deferrals (the handler raising hexq.Retry) before one counts as a failed attempt.
    """
    given: dict[str, Any] = {"max_attempts": max_attempts, "timeout": timeout, "retry": retry, "queue": queue,
                             "validate": validate, "rate": rate, "concurrency": concurrency, "breaker": breaker,
                             "max_deferrals": max_deferrals}
    register = registry.task(name, **{option: value for option, value in given.items() if value is not None})

    def decorate(fn: Callable[P, R]) -> TaskFunction[P, R]:
        register(cast(Any, fn))
        setattr(fn, "task_name", name)  # noqa: B010 - an attribute the function type does not declare
        setattr(fn, "submit", functools.partial(_submit, name))  # noqa: B010
        return cast(TaskFunction[P, R], fn)

    return decorate


def _submit(name: str, payload: Mapping[str, JSON] | None = None, **options: Any) -> TaskHandle:
    return default_client().submit(name, payload, **options)


# -- the default client ----------------------------------------------------------------------------
_lock = threading.Lock()
_config: dict[str, Any] = {}
_client: Client | None = None


def configure(url: str | None = None, *, api_key: str | None = None, tasks: Sequence[str] | None = None) -> None:
    """Where the @task functions' `.submit` sends: `url` as for Client.from_url (default: HEXQ_BACKEND, else
    sqlite:///hexq.db), with `api_key` for an http(s) URL and `tasks` for a direct one. The client is made
    on the next submit; one made before is closed."""
    global _client
    with _lock:
        previous, _client = _client, None
        _config.clear()
        _config.update(url=url, api_key=api_key, tasks=tasks)
    if previous is not None:
        previous.close()


def default_client() -> Client:
    """The client the @task functions' `.submit` uses, made on first use (see configure)."""
    global _client
    with _lock:
        if _client is None:
            url = _config.get("url") or Settings.from_env().backend_url
            _client = Client.from_url(url, api_key=_config.get("api_key"), tasks=_config.get("tasks"))
        return _client


@atexit.register
def _close_default() -> None:
    global _client
    with _lock:
        client, _client = _client, None
    if client is not None:
        # Best effort: by now the interpreter has shut down thread pools a backend may close through (SQLite's),
        # and whatever is left open ends with the process anyway.
        with contextlib.suppress(Exception):
            client.close()

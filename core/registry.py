"""The task handler registry and the `@task` decorator.

Handlers take the task's payload (a dict) and return a JSON value. They may be sync (run in a
thread) or async (run on the worker's loop).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from hexq.core.breaker import Breaker
from hexq.core.errors import ConfigurationError, UnknownTaskType, ValidationError
from hexq.core.model import HISTORY_LIMIT
from hexq.core.ratelimit import parse_rate
from hexq.core.retry import DEFAULT_RETRY, RetryPolicy

NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
MAX_REASON = 500  # characters of a validator's message in a 422; it may quote a whole payload
Handler = Callable[[dict[str, Any]], Any]
Validator = Callable[[dict[str, Any]], object]
"""Checks a payload at submit time; raises an exception (a ValueError, say) whose message names the field."""
F = TypeVar("F", bound=Handler)


def check_name(value: object, what: str) -> str:
    """Names become storage keys, so they are held to a small alphabet."""
    if not isinstance(value, str) or not NAME.match(value):
        raise ValidationError(f"{what} must match {NAME.pattern}, got {value!r}", field=what)
    return value


@dataclass(frozen=True, slots=True)
class TaskSpec:
    name: str
    fn: Handler
    max_attempts: int = 3
    timeout: float = 300.0
    retry: RetryPolicy = DEFAULT_RETRY
    queue: str = "default"
    validate: Validator | None = None
    rate: float = 0.0  # starts a second across all workers (a shared token bucket); 0 = no limit
    concurrency: int = 0  # at once in one worker process; 0 = no limit
    breaker: Breaker | None = None  # hexq.core.breaker: stop running the type while its downstream fails
    max_deferrals: int = 10  # times a task may raise Retry(after=...) before one counts as a failed attempt

    @property
    def breaker_name(self) -> str:
        """The breaker's name: its own, or the type's (only meaningful when `breaker` is set)."""
        return self.breaker.name or self.name if self.breaker is not None else self.name

    @property
    def burst(self) -> int:
        """A rate-limited type may start one second's worth at once (at least one)."""
        return max(1, int(self.rate))

    @property
    def is_async(self) -> bool:
        return asyncio.iscoroutinefunction(self.fn)

    def check(self, payload: dict[str, Any]) -> None:
        """Refuse a payload the handler could never accept, at submit (422) rather than after retries.

        Whatever Exception the validator raises is that refusal, not only ValueError and TypeError:
        the payload is the client's, so float() of a huge integer (OverflowError), a missing key
        (KeyError) or a division by zero is the client's error too. A BaseException that is not an
        Exception (KeyboardInterrupt, SystemExit, a cancellation) is not about the payload and goes on.
        """
        if self.validate is None:
            return
        try:
            self.validate(payload)
        except Exception as exc:
            raise ValidationError(f"{self.name}: {_reason(exc)}", field="payload") from exc


def _reason(exc: Exception) -> str:
    """The validator's message; the exception's type too unless it is the documented ValueError or TypeError
    (a bare OverflowError's or KeyError's text alone would not say what went wrong)."""
    try:
        text = str(exc)
    except Exception:  # an exception whose __str__ itself fails
        text = ""
    if not text or type(exc) not in (ValueError, TypeError):
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text[:MAX_REASON]


@dataclass
class Registry:
    _specs: dict[str, TaskSpec] = field(default_factory=dict)

    def register(self, spec: TaskSpec) -> TaskSpec:
        check_name(spec.name, "type")
        check_name(spec.queue, "queue")
        if spec.rate < 0 or spec.concurrency < 0:
            raise ConfigurationError(f"task {spec.name!r}: rate and concurrency must not be negative")
        if not 0 <= spec.max_deferrals < HISTORY_LIMIT:
            # A task's deferrals are counted in its history (hexq.core.outcome.deferred), which keeps the last
            # HISTORY_LIMIT entries: a larger bound could not be counted.
            raise ConfigurationError(f"task {spec.name!r}: max_deferrals must be 0..{HISTORY_LIMIT - 1}")
        if spec.breaker is not None:
            self._check_breaker(spec)
        self._specs[spec.name] = spec
        return spec

    def _check_breaker(self, spec: TaskSpec) -> None:
        """Types that share a breaker must agree on its policy: each worker applies its own copy."""
        check_name(spec.breaker_name, "breaker")
        for other in self._specs.values():
            if other.name != spec.name and other.breaker is not None and other.breaker_name == spec.breaker_name \
                    and other.breaker != spec.breaker:
                raise ConfigurationError(f"task {spec.name!r}: breaker {spec.breaker_name!r} is declared by "
                                         f"{other.name!r} with other settings")

    def breakers(self) -> dict[str, Breaker]:
        """Every declared breaker by name."""
        return {spec.breaker_name: spec.breaker for spec in self._specs.values() if spec.breaker is not None}

    def task(self, name: str, *, max_attempts: int = 3, timeout: float = 300.0,
             retry: RetryPolicy = DEFAULT_RETRY, queue: str = "default",
             validate: Validator | None = None, rate: str | None = None,
             concurrency: int = 0, breaker: Breaker | None = None, max_deferrals: int = 10) -> Callable[[F], F]:
        """Decorator: `@task("send_email", max_attempts=5, timeout=30, rate="10/s", concurrency=4,
        breaker=Breaker(failures=5, reset=30))`."""
        try:
            per_second = parse_rate(rate) if rate is not None else 0.0
        except ValueError as exc:
            raise ConfigurationError(f"task {name!r}: {exc}") from None

        def decorate(fn: F) -> F:
            self.register(TaskSpec(name, fn, max_attempts, timeout, retry, queue, validate, per_second, concurrency,
                                   breaker, max_deferrals))
            return fn

        return decorate

    def get(self, name: str) -> TaskSpec:
        spec = self._specs.get(name) if isinstance(name, str) else None
        if spec is None:
            raise UnknownTaskType(f"unknown task type {name!r}", field="type")
        return spec

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __iter__(self) -> Iterator[TaskSpec]:
        return iter(sorted(self._specs.values(), key=lambda s: s.name))

    def queues(self) -> tuple[str, ...]:
        """The queues the registered task types declare (`@task(queue=...)`), sorted, each once."""
        return tuple(sorted({spec.queue for spec in self._specs.values()}))


# Decorators run at import time, so handler modules need one registry to register into;
# workers and the API import the modules named in HEXQ_TASKS and read this one.
registry = Registry()
task = registry.task

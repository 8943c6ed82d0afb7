"""Settings, read once from the environment (HEXQ_*); CLI flags override them with `replace`."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from hexq.core.backpressure import Policy, parse_caps
from hexq.core.errors import ConfigurationError
from hexq.core.fairness import parse_weights
from hexq.core.ratelimit import MAX_BURST, parse_rate
from hexq.core.registry import Registry, check_name

DEFAULT_BACKEND = "sqlite:///hexq.db"


class DeclaredQueues(tuple[str, ...]):
    """The queues when HEXQ_QUEUES (--queues) is not given: `default` plus every queue a loaded task type
    declares. Settings.serving fills them in once the task modules are imported; until then it is
    ("default",), so whatever reads it earlier serves what hexq always served. A tuple of its own type, so
    that an explicit list, even ("default",), stays told apart from it."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Settings:
    backend_url: str = DEFAULT_BACKEND
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 2
    concurrency: int = 10
    batch: int = 10
    lease_seconds: float = 30.0
    idle_wait: float = 1.0
    budget: float = 60.0
    grace: float = 10.0
    poll_interval: float = 0.5
    max_invocations: int = 0  # 0: as many as `workers`
    warm: int = 1  # invocations `hexq serve` keeps waiting on the backend while idle (at most the cap)
    queues: tuple[str, ...] = DeclaredQueues(("default",))
    task_modules: tuple[str, ...] = ("hexq.functions.examples",)
    body_limit: int = 256 * 1024
    retention: float = 7 * 86_400.0
    log_level: str = "INFO"
    # One log line per HTTP request (uvicorn's access log). Off: at INFO it is a JSON line per submit,
    # which costs the API a large part of what it spends on a request.
    access_log: bool = False
    # One JSON line per task event (functions/task_events.py): submitted, started, succeeded, retried, dead...
    task_events: bool = True
    # API keys (functions/auth.py): entries inline and/or in a file; both empty = an open API.
    api_keys: str = field(default="", repr=False)
    api_keys_file: str = ""
    rate: str = "100/s"  # each API key's bucket refills this fast ("0": no limit) ...
    burst: int = 200  # ... and holds this many requests
    max_queued_per_tenant: int = 0  # 0: unlimited
    # Where `hexq experiment` writes its runs (--out); the dashboard's Experiments page lists the finished ones.
    experiments_dir: str = "experiments"
    # Back pressure (core/backpressure.py): caps per queue, "N" for every queue and/or "queue=N"; "" = none.
    max_backlog: str = ""  # queued tasks
    max_oldest_age: str = ""  # seconds the oldest queued task has waited
    # Fair queues (hexq.core.fairness): "tenant=weight,..."; a tenant not named has weight 1.
    tenant_weights: str = ""
    api_key: str = field(default="", repr=False)  # the secret a Python client sends to an http(s) hexq API
    # AWS Lambda (template.yaml sets them): an API function may serve without keys only when told so;
    # the poller function starts this worker function, unless the SQS event sources run the workers.
    allow_open_api: bool = False
    worker_function: str = ""
    poller_invokes: bool = True
    # Prometheus metrics (functions/metrics/): "on" or "off"; a worker or poller serves its own on
    # metrics_port (0: not served; the API serves them at /metrics).
    metrics: str = "on"
    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        """Refuse values that would make hexq misbehave (a zero lease, a negative grace) before anything runs."""
        for name, low in _LOWER_BOUNDS.items():
            value = getattr(self, name)
            if value <= low if name in _POSITIVE else value < low:
                raise ConfigurationError(f"{env_name(name)} must be {'above' if name in _POSITIVE else 'at least'} "
                                         f"{low:g}, not {value}")
        for name in ("port", "metrics_port"):
            if not 0 <= getattr(self, name) <= 65535:
                raise ConfigurationError(f"{env_name(name)} must be 0 to 65535, not {getattr(self, name)}")
        if self.metrics not in ("on", "off"):
            raise ConfigurationError(f"HEXQ_METRICS must be on or off, not {self.metrics!r}")
        if not self.queues:
            raise ConfigurationError("HEXQ_QUEUES names no queue")
        for queue in self.queues:
            check_name(queue, "queue")
        try:
            parse_rate(self.rate)
        except ValueError as exc:
            raise ConfigurationError(f"HEXQ_RATE: {exc}") from None
        parse_weights(self.tenant_weights)  # ConfigurationError naming the bad entry
        if self.burst > MAX_BURST:
            raise ConfigurationError(f"HEXQ_BURST must be at most {MAX_BURST}, not {self.burst}")
        _policy(self.max_backlog, self.max_oldest_age)  # parsed now: a bad cap stops the process before it serves

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(env_name(f.name))
            if raw is not None:
                values[f.name] = _parse(f.name, raw, _PARSERS[f.name])
        return cls(**values)

    def override(self, **changes: Any) -> Settings:
        """Apply CLI flags; a None value means the flag was not given."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def serving(self, registry: Registry) -> Settings:
        """These settings with the queues a worker serves filled in: as given, or else `default` plus every
        queue a task type in `registry` declares. Call it once the task modules are imported."""
        if self.queues_given:
            return self
        return replace(self, queues=DeclaredQueues(dict.fromkeys(("default", *registry.queues()))))

    @property
    def queues_given(self) -> bool:
        """HEXQ_QUEUES or --queues named the queues (rather than every declared queue)."""
        return not isinstance(self.queues, DeclaredQueues)

    @property
    def invocation_cap(self) -> int:
        return self.max_invocations or self.workers

    @property
    def warm_invocations(self) -> int:
        return min(self.warm, self.invocation_cap)

    @property
    def metrics_on(self) -> bool:
        return self.metrics == "on"

    @property
    def weights(self) -> dict[str, int]:
        return parse_weights(self.tenant_weights)

    @property
    def rate_per_second(self) -> float:
        return parse_rate(self.rate)

    @property
    def backpressure(self) -> Policy:
        """The back-pressure caps of HEXQ_MAX_BACKLOG and HEXQ_MAX_OLDEST_AGE."""
        return _policy(self.max_backlog, self.max_oldest_age)


def _policy(max_backlog: str, max_oldest_age: str) -> Policy:
    return Policy(parse_caps(max_backlog, "HEXQ_MAX_BACKLOG", integer=True),
                  parse_caps(max_oldest_age, "HEXQ_MAX_OLDEST_AGE", integer=False))


def env_name(field: str) -> str:
    """The environment variable behind a setting."""
    return _ENV_NAMES.get(field, "HEXQ_" + field.upper())


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


_ENV_NAMES = {"backend_url": "HEXQ_BACKEND", "lease_seconds": "HEXQ_LEASE", "task_modules": "HEXQ_TASKS"}
_LOWER_BOUNDS = {"workers": 1, "concurrency": 1, "batch": 1, "body_limit": 1, "max_invocations": 0, "warm": 0,
                 "burst": 1,
                 "max_queued_per_tenant": 0,
                 "lease_seconds": 0, "idle_wait": 0, "budget": 0, "poll_interval": 0, "grace": 0, "retention": 0}
# Zero is not allowed for these: e.g. idle_wait 0 turns a waiting claim into a busy loop.
_POSITIVE = frozenset({"lease_seconds", "idle_wait", "budget", "poll_interval"})
def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value not in ("true", "false", "on", "off"):
        raise ValueError(raw)
    return value in ("true", "on")


_bool.__name__ = "boolean (true or false, on or off)"
_BY_TYPE: dict[str, Callable[[str], Any]] = {"int": int, "float": float, "str": str, "bool": _bool}
_PARSERS: dict[str, Callable[[str], Any]] = {f.name: _BY_TYPE.get(str(f.type), _csv) for f in fields(Settings)}


def _parse(name: str, raw: str, parser: Callable[[str], Any]) -> Any:
    try:
        return parser(raw)
    except ValueError:
        raise ConfigurationError(f"{env_name(name)} has value {raw!r}, "
                                 f"which is not a valid {parser.__name__}") from None

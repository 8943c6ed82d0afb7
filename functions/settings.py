"""Settings, read once from the environment (HEXQ_*); CLI flags override them with `replace`."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from core.errors import ConfigurationError

DEFAULT_BACKEND = "sqlite:///hexq.db"


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
    queues: tuple[str, ...] = ("default",)
    task_modules: tuple[str, ...] = ("functions.examples",)
    body_limit: int = 256 * 1024
    retention: float = 7 * 86_400.0
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(_ENV_NAMES.get(f.name, "HEXQ_" + f.name.upper()))
            if raw is not None:
                values[f.name] = _parse(f.name, raw, _PARSERS[f.name])
        return cls(**values)

    def override(self, **changes: Any) -> Settings:
        """Apply CLI flags; a None value means the flag was not given."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    @property
    def invocation_cap(self) -> int:
        return self.max_invocations or self.workers


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


_ENV_NAMES = {"backend_url": "HEXQ_BACKEND", "lease_seconds": "HEXQ_LEASE", "task_modules": "HEXQ_TASKS"}
_PARSERS: dict[str, Callable[[str], Any]] = {
    f.name: {"int": int, "float": float, "str": str}.get(str(f.type), _csv) for f in fields(Settings)
}


def _parse(name: str, raw: str, parser: Callable[[str], Any]) -> Any:
    try:
        return parser(raw)
    except ValueError:
        env = _ENV_NAMES.get(name, "HEXQ_" + name.upper())
        raise ConfigurationError(f"{env} has value {raw!r}, which is not a valid {parser.__name__}") from None

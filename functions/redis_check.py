"""Start-up check of a Redis backend's production settings (RELIABILITY.md D8).

hexq's promise (nothing acknowledged is lost) needs `maxmemory-policy noeviction` (an evicting Redis
silently drops task keys) and persistence (`appendonly yes`; with neither AOF nor RDB a restart loses
every task). `hexq serve` and `hexq worker` read them with CONFIG GET at start-up and log a warning for
each problem; with `--strict` they refuse to start instead (exit 2). An ACL user without the CONFIG
permission, or an unreachable server, cannot be checked: that is a warning, never a refusal.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from redis.exceptions import NoPermissionError, RedisError, ResponseError

from hexq.core.errors import BackendUnavailable, ConfigurationError

log = logging.getLogger("hexq.redis_check")
REDIS_SCHEMES = ("redis", "rediss", "redis+cluster")


@dataclass
class Findings:
    problems: list[str] = field(default_factory=list)  # settings that break hexq's promises
    unchecked: str | None = None  # why nothing could be checked


async def inspect(url: str) -> Findings:
    """Read maxmemory-policy, appendonly and save from the server behind `url`."""
    from hexq.adapters.redis import connection

    findings = Findings()
    client = connection.connect(connection.parse(url))
    try:
        with connection.translated():
            config: dict[str, str] = {}
            for name in ("maxmemory-policy", "appendonly", "save"):
                config.update({str(k): str(v) for k, v in (await client.config_get(name)).items()})
    except NoPermissionError as exc:
        findings.unchecked = f"the Redis user may not run CONFIG GET ({exc})"
        return findings
    except (BackendUnavailable, ResponseError, RedisError, OSError) as exc:
        findings.unchecked = f"{type(exc).__name__}: {exc}"
        return findings
    finally:
        await client.aclose()
    policy = config.get("maxmemory-policy", "")
    if policy != "noeviction":
        findings.problems.append(f"maxmemory-policy is {policy!r}, not 'noeviction': under memory pressure Redis "
                                 "evicts keys, and tasks vanish without a trace")
    if config.get("appendonly", "").lower() != "yes":
        if not config.get("save", "").strip():
            findings.problems.append("persistence is off (appendonly no, no save points): a Redis restart loses "
                                     "every task")
        else:
            findings.problems.append("appendonly is 'no': only RDB snapshots, so a crash loses every task accepted "
                                     "since the last one (use appendonly yes, appendfsync everysec)")
    return findings


async def startup_check(url: str, *, strict: bool = False) -> Findings | None:
    """Warn about (or, strict, refuse with ConfigurationError) a Redis backend unfit for production.

    Returns None for other backends, which have nothing to check.
    """
    if urlsplit(url).scheme not in REDIS_SCHEMES:
        return None
    findings = await inspect(url)
    if findings.unchecked is not None:
        log.warning("could not check the Redis settings (maxmemory-policy, appendonly, save): %s",
                    findings.unchecked)
    for problem in findings.problems:
        log.warning("Redis is not configured for production: %s", problem)
    if strict and findings.problems:
        raise ConfigurationError("--strict: Redis is not configured for production: " + "; ".join(findings.problems))
    return findings

"""API keys: parsing the configured entries, and telling who presented a secret.

An entry is `name:tenant:scopes:sha256=<hex>[:rate=<rate>][:burst=<n>]`, for example
`ci:acme:submit+read:sha256=9f86d0...`. Entries are separated by commas or newlines; blank lines
and lines starting with `#` are skipped. Only the SHA-256 of a secret is ever configured or kept:
secrets are 256 random bits (see `new_secret`), so a fast hash is enough, as for GitHub tokens,
and a leaked configuration gives nothing away.

Error messages name the source and the entry's position, never the entry's text: a secret pasted
into the wrong field must not end up in a log.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from hexq.core.errors import ConfigurationError
from hexq.core.ratelimit import MAX_BURST, parse_rate

ALL_TENANTS = "*"  # a key of tenant "*" sees every tenant's tasks (operators); it submits as "default"
SECRET_PREFIX = "hexq_"
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_DIGEST = re.compile(r"^sha256=([0-9a-f]{64})$")
_DUMMY_DIGEST = "0" * 64  # compared against when no key matches, so every attempt costs the same


class Scope(StrEnum):
    SUBMIT = "submit"  # POST tasks and bulk, cancel the tenant's tasks
    READ = "read"  # GET tasks, stats, dead letters, schedules
    ADMIN = "admin"  # replay dead letters, PUT/DELETE schedules; implies every other scope
    METRICS = "metrics"  # GET /metrics: counts across every tenant, for Prometheus (admin implies it too)


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One configured key. `rate`/`burst` override the API-wide bucket when set (rate 0: unlimited)."""

    name: str
    tenant: str
    scopes: frozenset[Scope]
    digest: str = field(repr=False)  # hex SHA-256 of the secret
    rate: float | None = None
    burst: int | None = None

    def allows(self, scope: Scope) -> bool:
        return scope in self.scopes or Scope.ADMIN in self.scopes


class KeyRing:
    """The configured keys, indexed by the hash of their secret. Empty means the API is open."""

    def __init__(self, keys: Iterable[ApiKey] = ()) -> None:
        self._by_digest: dict[str, ApiKey] = {}
        for key in keys:
            self._by_digest[key.digest] = key

    def __bool__(self) -> bool:
        return bool(self._by_digest)

    def __len__(self) -> int:
        return len(self._by_digest)

    def names(self) -> list[str]:
        return sorted(key.name for key in self._by_digest.values())

    def authenticate(self, secret: str) -> ApiKey | None:
        """The key whose secret this is, or None.

        The lookup is by the secret's hash, so its timing says nothing about the secret; the final
        comparison is hmac.compare_digest all the same, and runs (against a dummy) when nothing matched.
        """
        digest = hash_secret(secret)
        key = self._by_digest.get(digest)
        matched = hmac.compare_digest(key.digest if key is not None else _DUMMY_DIGEST, digest)
        return key if matched and key is not None else None


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def new_secret() -> str:
    """256 random bits, URL-safe; the prefix lets secret scanners recognise a leaked key."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def entry(name: str, tenant: str, scopes: Iterable[Scope], secret: str, *, rate: str | None = None,
          burst: int | None = None) -> str:
    """The configuration line for a key (what `keygen` prints)."""
    line = f"{name}:{tenant}:{'+'.join(sorted(set(scopes)))}:sha256={hash_secret(secret)}"
    if rate is not None:
        line += f":rate={rate}"
    if burst is not None:
        line += f":burst={burst}"
    parse_entry(line, "the new key")  # never print a line that would not load
    return line


def parse_keys(sources: Mapping[str, str]) -> KeyRing:
    """Every entry of every source (e.g. {"HEXQ_API_KEYS": ..., "HEXQ_API_KEYS_FILE /etc/hexq/keys": ...}).

    Raises ConfigurationError naming the source and entry number for a bad entry, a name used
    twice, or one secret configured twice.
    """
    seen: dict[str, str] = {}  # name or digest -> where it was first configured
    keys: list[ApiKey] = []
    for source, text in sources.items():
        for number, raw in enumerate(_entries(text), start=1):
            where = f"{source} entry {number}"
            key = parse_entry(raw, where)
            for what, value in (("name", "n:" + key.name), ("secret", "d:" + key.digest)):
                if value in seen:
                    raise ConfigurationError(f"{where}: the same {what} as {seen[value]}")
                seen[value] = where
            keys.append(key)
    return KeyRing(keys)


def parse_entry(raw: str, where: str) -> ApiKey:
    parts = raw.split(":")
    if len(parts) < 4:
        raise ConfigurationError(f"{where}: expected name:tenant:scopes:sha256=<hex> (got {len(parts)} fields)")
    name, tenant, scopes, digest, *options = (part.strip() for part in parts)
    if not _NAME.match(name) or name.startswith(SECRET_PREFIX):
        # A name starting like a secret is most likely a secret pasted into the wrong field.
        raise ConfigurationError(f"{where}: the name must match {_NAME.pattern} and not start with {SECRET_PREFIX!r}")
    if tenant != ALL_TENANTS and not _NAME.match(tenant):
        raise ConfigurationError(f"{where}: the tenant must match {_NAME.pattern} or be '*'")
    match = _DIGEST.match(digest.lower())
    if match is None:
        raise ConfigurationError(f"{where}: the fourth field must be sha256=<64 hex digits>, the hash "
                                 "of the secret (never the secret itself; see keygen)")
    rate, burst = _options(options, where)
    return ApiKey(name, tenant, _scopes(scopes, where), match[1], rate, burst)


def _entries(text: str) -> list[str]:
    lines = (line.strip() for line in text.splitlines())
    return [item.strip() for line in lines if line and not line.startswith("#")
            for item in line.split(",") if item.strip()]


def _scopes(text: str, where: str) -> frozenset[Scope]:
    names = [name.strip().lower() for name in text.split("+")]
    allowed = {scope.value for scope in Scope}
    if not names or any(name not in allowed for name in names):
        raise ConfigurationError(f"{where}: scopes must be one or more of {', '.join(sorted(allowed))}, "
                                 "joined by '+'")
    return frozenset(Scope(name) for name in names)


def _options(options: list[str], where: str) -> tuple[float | None, int | None]:
    rate: float | None = None
    burst: int | None = None
    for option in options:
        key, _, value = option.partition("=")
        try:
            if key == "rate" and rate is None:
                rate = parse_rate(value)
            elif (key == "burst" and burst is None and value.isascii() and value.isdigit() and len(value) <= 10
                  and 1 <= int(value) <= MAX_BURST):
                burst = int(value)
            else:
                raise ValueError
        except ValueError:
            raise ConfigurationError(f"{where}: optional fields are rate=<n>/s|min|h and burst=<n> (1 to {MAX_BURST}), "
                                     "each at most once") from None
    return rate, burst


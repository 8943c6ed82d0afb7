"""Backend URLs to redis-py clients, and driver errors to domain errors.

URLs:
    redis://[user:password@]host:port/db      one server (a redis-py URL, passed through)
    rediss://...                               the same over TLS (redis-py's ssl_* query options apply)
    redis+cluster://[user:password@]host:port,host:port
                                               Redis Cluster, discovered from the startup nodes
hexq's own query options, on any of them:
    partition=<name>            the key namespace and hash tag (default "hexq")
    shards=per-queue            spread over a cluster: each queue its own hash tag (shards.py; designed, and
                                refused by RedisBackend until it is built: docs/redis-cluster-sharding.md)
    hot=<queue>:<n>[,...]       with shards=per-queue: split those queues into n shards each
    socket_connect_timeout=<s>  default 1 s: with Redis down, the API answers 503 within it (D9)
    socket_timeout=<s>          default 2 s: a hung server is reported, not waited for
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    ClusterError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from hexq.adapters.redis.keys import DEFAULT_PARTITION, check_part
from hexq.adapters.redis.shards import Sharding, parse_options
from hexq.core.errors import BackendUnavailable, ConfigurationError, ValidationError

Client = Redis | RedisCluster

CONNECT_TIMEOUT = 1.0
SOCKET_TIMEOUT = 2.0
# Error replies that mean "not now" rather than "wrong request": out of memory, loading the
# dataset, busy with a script, failing over, a read-only replica, disk errors refusing writes.
_UNAVAILABLE = ("OOM", "LOADING", "BUSY", "MASTERDOWN", "READONLY", "CLUSTERDOWN", "TRYAGAIN", "NOREPLICAS",
                "MISCONF")
_OWN_OPTIONS = ("partition", "socket_connect_timeout", "socket_timeout", "shards", "hot")  # hexq's, not redis-py's


@dataclass(frozen=True, slots=True)
class Target:
    """Where and how to connect, parsed from a backend URL."""

    # redis:// or rediss:// minus hexq's own options ('' for a cluster). Not in repr: it may hold a password.
    url: str = field(repr=False)
    nodes: tuple[tuple[str, int], ...]  # a cluster's startup nodes; () for one server
    partition: str
    connect_timeout: float
    timeout: float
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sharding: Sharding | None = None  # None: every key under the partition's one tag (the legacy layout)


def parse(url: str) -> Target:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    own = {name: value for name, value in query if name in _OWN_OPTIONS}
    rest = [(name, value) for name, value in query if name not in own]
    try:
        partition = check_part(own.get("partition", DEFAULT_PARTITION), "partition")
        sharding = parse_options(own.get("shards"), own.get("hot"))
    except (ValidationError, ConfigurationError) as exc:
        raise ConfigurationError(f"HEXQ_BACKEND {_safe(url)!r}: {exc}") from exc
    connect_timeout = _seconds(own, "socket_connect_timeout", CONNECT_TIMEOUT, url)
    timeout = _seconds(own, "socket_timeout", SOCKET_TIMEOUT, url)
    if parts.scheme in ("redis", "rediss"):
        return Target(urlunsplit(parts._replace(query=urlencode(rest))), (), partition, connect_timeout, timeout,
                      sharding=sharding)
    if parts.scheme == "redis+cluster":
        if rest:
            raise ConfigurationError(f"HEXQ_BACKEND {_safe(url)!r}: unknown option(s) {[n for n, _ in rest]}")
        return replace(_cluster(parts.netloc, url, partition, connect_timeout, timeout), sharding=sharding)
    raise ConfigurationError(f"not a Redis URL: {_safe(url)!r}")


def _cluster(netloc: str, url: str, partition: str, connect_timeout: float, timeout: float) -> Target:
    credentials, _, hosts = netloc.rpartition("@")
    user, _, password = credentials.partition(":")
    nodes = []
    for node in hosts.split(","):
        host, _, port = node.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ConfigurationError(f"HEXQ_BACKEND {_safe(url)!r}: cluster nodes are host:port,host:port")
        nodes.append((host.strip("[]"), int(port)))
    return Target("", tuple(nodes), partition, connect_timeout, timeout,
                  unquote(user) or None, unquote(password) or None)


def _seconds(options: dict[str, str], name: str, default: float, url: str) -> float:
    try:
        value = float(options.get(name, default))
    except ValueError:
        value = -1.0
    if not 0 < value < 3600:
        raise ConfigurationError(f"HEXQ_BACKEND {_safe(url)!r}: {name} must be seconds, above 0")
    return value


def _safe(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")))


def connect(target: Target, *, blocking: bool = False, decode: bool = True) -> Client:
    """A client with its own pool. `blocking` clients serve BLPOP, which may outlast any socket
    timeout, so they have none; the caller bounds each wait itself. `decode=False`: replies as bytes
    (DUMP's serialized values, which are not text)."""
    options: dict[str, Any] = {
        "decode_responses": decode,
        "socket_connect_timeout": target.connect_timeout,
        "socket_timeout": None if blocking else target.timeout,
        # One immediate retry, on connection errors only: it replaces a pooled connection the server
        # closed, and fails fast otherwise. A timed-out script is not retried: it may have run.
        "retry": Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
    }
    if target.nodes:
        startup = [ClusterNode(host, port) for host, port in target.nodes]
        return RedisCluster(startup_nodes=startup, username=target.username, password=target.password, **options)
    return Redis.from_url(target.url, **options)


@contextmanager
def translated() -> Iterator[None]:
    """Driver errors become BackendUnavailable (the API's 503), with the cause kept."""
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError, ClusterError, RedisClusterException, TimeoutError,
            OutOfMemoryError, ReadOnlyError) as exc:  # BusyLoadingError is a ConnectionError
        raise BackendUnavailable("redis", f"{type(exc).__name__}: {exc}") from exc
    except ResponseError as exc:
        message = str(exc)
        if "hexq: invalid key part" in message:
            raise ValidationError(message.partition("hexq: ")[2].split(" script:")[0]) from exc
        if any(message.startswith(code) or f" {code} " in message for code in _UNAVAILABLE):
            raise BackendUnavailable("redis", f"{type(exc).__name__}: {exc}") from exc
        raise

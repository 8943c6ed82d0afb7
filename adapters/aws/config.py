"""The aws:// URL, the resource names derived from its prefix, and the boto3 clients (made on first use)."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from hexq.core.errors import ConfigurationError
from hexq.core.model import Priority

ClientFactory = Callable[[str], Any]
"""service name ("dynamodb" or "sqs") -> a boto3 client for it."""

MAX_LONG_POLL = 20  # SQS's largest WaitTimeSeconds
_PREFIX = re.compile(r"^[A-Za-z0-9_-]{1,70}$")  # SQS names allow 80 characters; "-critical" takes 9
_REGION = re.compile(r"^[a-z0-9-]{1,32}$")
_PARAMS = frozenset({"region", "prefix", "endpoint", "ttl", "long_poll"})


@dataclass(frozen=True, slots=True)
class AwsConfig:
    """Where the backend lives. Every resource name comes from `prefix` (the stack name on Lambda).

    Parameters:
        region: the AWS region of the table and queues.
        prefix: names the table `<prefix>-tasks` and the queues `<prefix>-critical|high|normal|low`.
        endpoint: an emulator's URL (LocalStack, moto server); None for AWS itself.
        ttl: seconds after which DynamoDB's TTL deletes a succeeded or cancelled task; 0 leaves
            retention to the poller's purge_finished alone.
        long_poll: the most seconds one SQS receive waits (WaitTimeSeconds), 0 to 20.
    """

    region: str
    prefix: str = "hexq"
    endpoint: str | None = None
    ttl: float = 0.0
    long_poll: int = MAX_LONG_POLL

    @property
    def table(self) -> str:
        return f"{self.prefix}-tasks"

    def queue(self, level: Priority) -> str:
        return f"{self.prefix}-{level.name.lower()}"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.prefix}-dlq"


def parse(url: str, env: Mapping[str, str] = os.environ) -> AwsConfig:
    """aws://?region=eu-west-1&prefix=hexq[&endpoint=http://127.0.0.1:4566][&ttl=604800][&long_poll=20].

    The region falls back to AWS_REGION / AWS_DEFAULT_REGION. Raises ConfigurationError naming the
    offending value.
    """
    parts = urlsplit(url)
    if parts.scheme != "aws" or parts.netloc or parts.path not in ("", "/"):
        raise ConfigurationError(f"HEXQ_BACKEND {url!r} is not an aws:// URL; use aws://?region=...&prefix=...")
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = set(params) - _PARAMS
    if unknown:
        raise ConfigurationError(f"HEXQ_BACKEND {url!r} has unknown parameters {sorted(unknown)}; "
                                 f"known: {sorted(_PARAMS)}")
    region = params.get("region") or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or ""
    if not _REGION.match(region):
        raise ConfigurationError(f"HEXQ_BACKEND {url!r}: region {region!r} is not a region; add ?region=...")
    prefix = params.get("prefix", "hexq")
    if not _PREFIX.match(prefix):
        raise ConfigurationError(f"HEXQ_BACKEND {url!r}: prefix {prefix!r} must match {_PREFIX.pattern}")
    endpoint = params.get("endpoint") or None
    if endpoint is not None and urlsplit(endpoint).scheme not in ("http", "https"):
        raise ConfigurationError(f"HEXQ_BACKEND {url!r}: endpoint {endpoint!r} must be an http(s) URL")
    return AwsConfig(region, prefix, endpoint, _number(url, params, "ttl", 0.0, 10 * 365 * 86_400.0),
                     int(_number(url, params, "long_poll", MAX_LONG_POLL, MAX_LONG_POLL)))


def _number(url: str, params: Mapping[str, str], name: str, default: float, high: float) -> float:
    text = params.get(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= high:
        raise ConfigurationError(f"HEXQ_BACKEND {url!r}: {name} {text!r} must be a number from 0 to {high:g}")
    return value


def boto3_factory(config: AwsConfig) -> ClientFactory:
    """Clients for `config`: its region and endpoint, standard retries, a read timeout past the long poll."""

    def make(service: str) -> Any:
        import boto3  # type: ignore[import-untyped]
        from botocore.config import Config  # type: ignore[import-untyped]

        settings = Config(connect_timeout=5, read_timeout=config.long_poll + 10,
                          retries={"mode": "standard", "max_attempts": 3})
        session = boto3.session.Session(region_name=config.region)  # sessions are not thread-safe: one each
        return session.client(service, endpoint_url=config.endpoint, config=settings)

    return make


class Clients:
    """The DynamoDB and SQS clients, each made on first use. boto3 clients are thread-safe once made."""

    def __init__(self, factory: ClientFactory) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._made: dict[str, Any] = {}

    def get(self, service: str) -> Any:
        with self._lock:
            if service not in self._made:
                self._made[service] = self._factory(service)
            return self._made[service]

    def close(self) -> None:
        with self._lock:
            made, self._made = list(self._made.values()), {}
        for client in made:
            client.close()

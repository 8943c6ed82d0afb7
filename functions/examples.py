"""Built-in task types, so the embedded demo does real work: sleep, noop, echo, fail, checksum, webhook.

They are registered in the global registry when this module is imported (HEXQ_TASKS defaults
to it). Each has a validator, so a bad payload is refused at submit with a 422 naming the field;
the handlers parse with the same functions.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import random
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from hexq.core.registry import task

MAX_SLEEP = 60.0
MAX_ROUNDS = 100_000
MAX_WEBHOOK_TIMEOUT = 30.0
# Fixed-length digests only: shake_* need a length and would make the result ambiguous.
ALGORITHMS = frozenset(a for a in hashlib.algorithms_guaranteed if not a.startswith("shake_"))


def _seconds(payload: dict[str, Any]) -> float:
    return _number(payload, "seconds", 1.0, 0.0, MAX_SLEEP)


def _probability(payload: dict[str, Any]) -> float:
    return _number(payload, "probability", 0.5, 0.0, 1.0)


@task("sleep", timeout=MAX_SLEEP + 30, validate=_seconds)
async def sleep(payload: dict[str, Any]) -> dict[str, float]:
    """{"seconds": 0..60 (default 1)} -> {"slept": seconds}. Async: costs the worker no thread."""
    seconds = _seconds(payload)
    await asyncio.sleep(seconds)
    return {"slept": seconds}


@task("noop")
async def noop(payload: dict[str, Any]) -> None:
    """Does nothing: what `hexq bench` drains, so it measures hexq rather than the handler."""


@task("echo")
def echo(payload: dict[str, Any]) -> dict[str, Any]:
    """Returns its payload unchanged."""
    return payload


@task("fail", validate=_probability)
def fail(payload: dict[str, Any]) -> dict[str, float]:
    """{"probability": 0..1 (default 0.5)}: raises RuntimeError that often, to exercise retries and the DLQ."""
    probability = _probability(payload)
    if random.random() < probability:
        raise RuntimeError(f"failed on purpose (probability {probability:g})")
    return {"probability": probability}


def _checksum_args(payload: dict[str, Any]) -> tuple[str, int, str]:
    data = payload.get("data", "")
    if not isinstance(data, str):
        raise ValueError(f"checksum: data must be a string, not {type(data).__name__}")
    rounds = _integer(payload, "rounds", 1, 1, MAX_ROUNDS)
    algorithm = payload.get("algorithm", "sha256")
    if algorithm not in ALGORITHMS:
        raise ValueError(f"checksum: algorithm must be one of {', '.join(sorted(ALGORITHMS))}, not {algorithm!r}")
    return data, rounds, algorithm


def _webhook_args(payload: dict[str, Any]) -> tuple[str, bytes, float]:
    url = _url(payload.get("url"))
    body = json.dumps(payload.get("body", {}), allow_nan=False).encode()
    return url, body, _number(payload, "timeout", 10.0, 0.1, MAX_WEBHOOK_TIMEOUT)


@task("checksum", timeout=120, validate=_checksum_args)
def checksum(payload: dict[str, Any]) -> dict[str, Any]:
    """{"data": str, "rounds": 1..100000 (default 1), "algorithm": "sha256"}: hash `data`, then re-hash
    the digest `rounds - 1` more times. CPU work, so it runs in a thread."""
    data, rounds, algorithm = _checksum_args(payload)
    digest = data.encode()
    for _ in range(rounds):
        digest = hashlib.new(algorithm, digest).digest()
    return {"algorithm": algorithm, "rounds": rounds, "digest": digest.hex()}


@task("webhook", timeout=MAX_WEBHOOK_TIMEOUT + 30, max_attempts=5, validate=_webhook_args)
def webhook(payload: dict[str, Any]) -> dict[str, int]:
    """{"url": http(s) URL, "body": JSON (default {}), "timeout": 0.1..30 s (default 10)}: POST the body as
    JSON and return {"status": code}. Redirects are not followed; any non-2xx raises, so the task retries."""
    url, body, timeout = _webhook_args(payload)
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "hexq-webhook"})
    opener = urllib.request.build_opener(_NoRedirect())
    try:
        with opener.open(request, timeout=timeout) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        raise RuntimeError(f"webhook: {url} answered {exc.code}") from None
    if not 200 <= status < 300:
        raise RuntimeError(f"webhook: {url} answered {status}")
    return {"status": status}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A POST that gets redirected is reported as its 3xx status rather than silently re-sent as a GET."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _number(payload: dict[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = payload.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a number, not {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be from {low:g} to {high:g}, not {value!r}")
    return float(value)


def _integer(payload: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = payload.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer from {low} to {high}, not {value!r}")
    return value


def _url(value: object) -> str:
    if not isinstance(value, str) or len(value) > 2048:
        raise ValueError(f"webhook: url must be a string of at most 2048 characters, not {value!r}")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"webhook: url must be an absolute http:// or https:// URL, not {value!r}")
    return value

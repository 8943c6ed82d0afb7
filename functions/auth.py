"""API keys at the HTTP edge: load them from the settings, admit or refuse each request, and mint new ones.

With no key configured the API is open, as before keys existed: every caller sees every tenant.
With keys, each /v1 request must present one (`Authorization: Bearer <secret>` or `X-API-Key:
<secret>`, never the URL, which ends up in access logs); `Guard.admit` then checks the endpoint's
scope and takes a token from the key's bucket. Secrets are never logged, stored or echoed: only
their SHA-256 is configured (core/auth.py).

    python -m hexq.functions.auth keygen NAME --tenant T --scopes submit,read [--rate 10/s] [--burst 20]

prints a new secret, once, and the entry to add to HEXQ_API_KEYS (or the HEXQ_API_KEYS_FILE).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from starlette.datastructures import Headers

from hexq.core.auth import ALL_TENANTS, ApiKey, KeyRing, Scope, entry, new_secret, parse_keys
from hexq.core.errors import ConfigurationError
from hexq.core.ports import RateLimiter
from hexq.core.ratelimit import parse_rate
from hexq.functions.errors import Forbidden, RateLimited, Unauthorized
from hexq.functions.settings import Settings

DEFAULT_TENANT = "default"


def load_keys(settings: Settings) -> KeyRing:
    """HEXQ_API_KEYS plus HEXQ_API_KEYS_FILE. A source that is set but names no key is an error, so a
    truncated file cannot quietly open the API."""
    sources: dict[str, str] = {}
    if settings.api_keys.strip():
        sources["HEXQ_API_KEYS"] = settings.api_keys
    path = settings.api_keys_file
    if path:
        try:
            sources[f"HEXQ_API_KEYS_FILE {path}"] = Path(path).read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            raise ConfigurationError(f"HEXQ_API_KEYS_FILE {path!r} cannot be read: {reason}") from None
    for source, text in sources.items():
        if not parse_keys({source: text}):
            raise ConfigurationError(f"{source} names no key; unset it to run the API without keys")
    return parse_keys(sources)


def presented_secret(headers: Headers) -> str | None:
    """The secret from `Authorization: Bearer` or `X-API-Key`; None when absent, malformed, repeated,
    or when the two headers disagree (any of which is a 401)."""
    authorization = headers.getlist("authorization")
    api_key = headers.getlist("x-api-key")
    if len(authorization) > 1 or len(api_key) > 1:
        return None
    bearer = None
    if authorization:
        scheme, _, token = authorization[0].strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        bearer = token.strip()
    plain = api_key[0].strip() if api_key else None
    if bearer is not None and plain is not None and bearer != plain:
        return None
    return bearer or plain or None


@dataclass(frozen=True, slots=True)
class Guard:
    """Admits requests: authentication (401), scope (403), then the key's token bucket (429).

    `rate` is requests a second per key (0: unlimited) and `burst` the bucket size; a key's own
    rate= / burst= override them.
    """

    keys: KeyRing
    limiter: RateLimiter
    rate: float
    burst: int

    async def admit(self, headers: Headers, scope: Scope) -> ApiKey | None:
        """The caller's key, or None when no keys are configured (an open API)."""
        if not self.keys:
            return None
        secret = presented_secret(headers)
        key = self.keys.authenticate(secret) if secret is not None else None
        if key is None:
            raise Unauthorized()
        if not key.allows(scope):
            raise Forbidden(scope.value)
        rate = self.rate if key.rate is None else key.rate
        if rate > 0:
            wait = await self.limiter.acquire(f"api-key:{key.name}", rate, key.burst or self.burst)
            if wait > 0:
                raise RateLimited(wait)
        return key


def tenant_of(key: ApiKey | None) -> str | None:
    """The tenant whose tasks the caller sees; None sees every tenant (no keys, or a key of tenant '*')."""
    return None if key is None or key.tenant == ALL_TENANTS else key.tenant


def owner_of(key: ApiKey | None) -> str:
    """The tenant that the caller's new tasks and schedules belong to."""
    return tenant_of(key) or DEFAULT_TENANT


# -- keygen ----------------------------------------------------------------------------------------
KEYGEN_HELP = "make a new API key: prints the secret once, and its HEXQ_API_KEYS entry"


def add_keygen_arguments(parser: argparse.ArgumentParser) -> None:
    """keygen's arguments, shared by `hexq keygen` and `python -m hexq.functions.auth keygen`."""
    parser.add_argument("name", help="the key's name, unique among the keys ([A-Za-z0-9_.-], up to 64)")
    parser.add_argument("--tenant", default=DEFAULT_TENANT, help="whose tasks it submits and sees; '*' for all "
                        "(default: default)")
    parser.add_argument("--scopes", default="submit,read", help="comma-separated: submit, read, admin, "
                        "metrics (Prometheus's scrape; admin implies the others; default: submit,read)")
    parser.add_argument("--rate", help="this key's own rate limit, e.g. 10/s (default: HEXQ_RATE)")
    parser.add_argument("--burst", type=int, help="this key's own burst (default: HEXQ_BURST)")


def keygen(args: argparse.Namespace) -> int:
    """Print a new secret and its entry; 2 for a bad scope, rate or name."""
    try:
        scopes = [Scope(s.strip().lower()) for s in args.scopes.split(",") if s.strip()]
        if args.rate is not None:
            parse_rate(args.rate)
        secret = new_secret()
        line = entry(args.name, args.tenant, scopes, secret, rate=args.rate, burst=args.burst)
    except (ValueError, ConfigurationError) as exc:
        print(f"hexq: error: {exc}", file=sys.stderr)
        return 2
    print(f"secret (shown only now; give it to the client): {secret}")
    print(f"HEXQ_API_KEYS entry (append it, comma or newline separated): {line}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hexq.functions.auth", description="hexq API keys")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_keygen_arguments(sub.add_parser("keygen", help=KEYGEN_HELP, description=KEYGEN_HELP))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    return keygen(args)


if __name__ == "__main__":
    sys.exit(main())

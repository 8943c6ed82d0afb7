"""AWS Lambda entry point for the HTTP API: the same Starlette app as `hexq serve`, behind Mangum.

Mangum turns API Gateway HTTP API (payload v2), REST API (v1) and ALB events into ASGI requests and
the responses back. Lifespan is off: Mangum would run it on every invocation, and the app needs none —
the container (backend, services) is built here once per cold start, the only module-level object,
and reused while the process is warm. Mangum keeps one event loop for the process, so clients bound to
a loop (redis.asyncio) survive between invocations.

Nothing connects at import: the backend opens its connection on the first request. Drivers are
imported by bootstrap only for the backend chosen (no boto3 unless HEXQ_BACKEND is aws://).
"""

from __future__ import annotations

from mangum import Mangum

from functions.api import create_app
from functions.bootstrap import Container, bootstrap
from functions.settings import Settings


def make_handler(container: Container) -> Mangum:
    return Mangum(create_app(container), lifespan="off")


handler = make_handler(bootstrap(Settings.from_env()))

"""AWS Lambda entry point for the HTTP API: the same Starlette app as `hexq serve`, behind Mangum.

Mangum turns API Gateway HTTP API (payload v2), REST API (v1) and ALB events into ASGI requests and
the responses back. Lifespan is off: Mangum would run it on every invocation, and the app needs none —
the container (backend, services) is built here once per cold start, the only module-level object,
and reused while the process is warm. Mangum keeps one event loop for the process, so clients bound to
a loop (redis.asyncio) survive between invocations.

No open API by default, the stance of `hexq serve` (which refuses a public bind without keys): an API
Gateway URL is public, so without API keys (HEXQ_API_KEYS / HEXQ_API_KEYS_FILE) the function serves
nothing unless HEXQ_ALLOW_OPEN_API=true (template.yaml's AllowOpenApi) says it may. Refused, it answers
every request with a JSON 503 `api_keys_required` naming the fix, and touches no backend. It does not
fail its cold start instead: Lambda would then retry the init on every request and API Gateway would
answer its own bare 500, with the reason only in the function's logs.

Nothing connects at import: the backend opens its connection on the first request. Drivers are
imported by bootstrap only for the backend chosen (no boto3 unless HEXQ_BACKEND is aws://).
"""

from __future__ import annotations

import logging
from typing import Any

from mangum import Mangum
from mangum.types import ASGI, LambdaContext, LambdaEvent
from starlette.types import Receive, Scope, Send

from hexq.core.events import Events
from hexq.functions.api import create_app
from hexq.functions.bootstrap import Container, bootstrap
from hexq.functions.emf import flush, on_lambda
from hexq.functions.errors import error_response
from hexq.functions.settings import Settings

log = logging.getLogger("hexq.api")

OPEN_API_ENV = "HEXQ_ALLOW_OPEN_API"
REFUSAL = ("this hexq API has no API keys, and an API without keys is open to anyone who has its URL, so it "
           "serves nothing: configure keys (the stack's ApiKeys parameter, HEXQ_API_KEYS; `hexq keygen` prints "
           f"an entry), or deploy with AllowOpenApi=true ({OPEN_API_ENV}=true) to run it open on purpose")


def make_handler(container: Container) -> Mangum:
    """The API behind Mangum; without keys, only when the settings allow an open API (HEXQ_ALLOW_OPEN_API)."""
    if container.keys or container.settings.allow_open_api:
        return Flushing(create_app(container), container.events)
    log.error("refusing to serve: %s", REFUSAL)
    return Flushing(refuse, container.events)


class Flushing(Mangum):
    """Mangum that prints the request's task metrics (submits, rejections: EMF) as the invocation ends."""

    def __init__(self, app: ASGI, events: Events) -> None:
        super().__init__(app, lifespan="off")
        self.events = events

    def __call__(self, event: LambdaEvent, context: LambdaContext) -> dict[str, Any]:
        try:
            return super().__call__(event, context)
        finally:
            flush(self.events)


async def refuse(scope: Scope, receive: Receive, send: Send) -> None:
    """Every request to an API that may not run open: 503, in the JSON shape of every hexq error."""
    await error_response(503, "api_keys_required", REFUSAL, {"setting": OPEN_API_ENV})(scope, receive, send)


_settings = Settings.from_env()
handler = make_handler(bootstrap(_settings, events=on_lambda(_settings), serving=True))

"""hexq_http_requests_total and hexq_http_request_duration_seconds, by route template.

A pure ASGI middleware: the router records the route it matched in the request's scope (Starlette puts it
under "route"), and the middleware labels by that route's path template (`/v1/tasks/{id}`), never by the
raw path, so ids in URLs cannot mint series; a path no route matched is "other".
"""

from __future__ import annotations

import re
from time import perf_counter
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hexq.functions.metrics.instruments import HttpInstruments
from hexq.functions.metrics.values import Observer, Value, Values

OTHER = "other"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
_CONVERTOR = re.compile(r"\{([^}:]+):[^}]+\}")


def template(path: str) -> str:
    """A route's path as a label: its parameters without their convertors (`{id:task_id}` is `{id}`)."""
    return _CONVERTOR.sub(r"{\1}", path)


class HttpMetrics:
    def __init__(self, app: ASGIApp, instruments: HttpInstruments, values: Values) -> None:
        self.app = app
        self._i = instruments
        self._values = values
        self._routes: dict[str, str] = {}
        self._children: dict[tuple[str, str, int], tuple[Value, Observer]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the server answers when the app raises before it starts a response
        start = perf_counter()

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self._count(scope, status, perf_counter() - start)

    def _count(self, scope: Scope, status: int, seconds: float) -> None:
        method = scope["method"] if scope["method"] in METHODS else OTHER
        key = (method, self._route(scope.get("route")), status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self._values.counter(self._i.requests.labels(method, key[1], str(status))),
                self._values.histogram(self._i.duration.labels(method, key[1])))
        children[0].inc(1.0)
        children[1].observe(seconds)

    def _route(self, route: Any) -> str:
        path = getattr(route, "path", None)
        if not isinstance(path, str):
            return OTHER
        label = self._routes.get(path)
        if label is None:
            label = self._routes[path] = template(path)
        return label

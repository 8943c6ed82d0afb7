"""A local stand-in for API Gateway in front of the Lambda API handler (functions/lambda_api.py), for the browser.

Each HTTP request to 127.0.0.1 becomes an API Gateway HTTP API (payload v2) event for the Mangum handler, and the
handler's answer becomes the response: the whole body at once, as API Gateway buffers it (so the dashboard's
event stream ends after one snapshot and the page polls, as it does behind a real API Gateway). Requests are
served one at a time on one thread with one event loop, as one warm Lambda instance serves them; the module is
imported on that thread, which is the cold start.
"""

from __future__ import annotations

import asyncio
import base64
import importlib
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import ModuleType
from typing import Any

MODULE = "hexq.functions.lambda_api"


@dataclass
class FakeContext:
    """What the Lambda runtime passes as `context`, as far as hexq and Mangum look at it."""

    remaining_ms: int = 29_000  # API Gateway's limit
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_name: str = "hexq-ApiFunction"
    started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int(self.remaining_ms - (time.monotonic() - self.started) * 1000))


def api_gateway_event(method: str, target: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    path, _, query = target.partition("?")
    return {
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": query,
        "headers": {name.lower(): value for name, value in headers.items()} | {"x-forwarded-proto": "http"},
        "requestContext": {"accountId": "123456789012", "apiId": "local", "domainName": headers.get("host", ""),
                           "domainPrefix": "local", "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                                                             "sourceIp": "127.0.0.1",
                                                             "userAgent": headers.get("user-agent", "")},
                           "requestId": str(uuid.uuid4()), "routeKey": "$default", "stage": "$default",
                           "timeEpoch": int(time.time() * 1000)},
        "isBase64Encoded": True, "body": base64.b64encode(body).decode(),
    }


class _Forward(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one request per connection: nothing waits on a kept-alive socket
    server: _Server

    def _forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        event = api_gateway_event(self.command, self.path, dict(self.headers.items()), body)
        answer = self.server.handler(event, FakeContext())
        self.server.seen.append((self.command, self.path, int(answer["statusCode"])))
        content = answer.get("body") or ""
        raw = base64.b64decode(content) if answer.get("isBase64Encoded") else content.encode()
        self.send_response(int(answer["statusCode"]))
        for name, value in answer.get("headers", {}).items():
            if name.lower() != "content-length":
                self.send_header(name, value)
        for cookie in answer.get("cookies", []):
            self.send_header("set-cookie", cookie)
        self.send_header("content-length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    do_GET = do_POST = do_PUT = do_DELETE = _forward

    def log_message(self, format: str, *args: Any) -> None:  # the test reads `seen` instead
        pass


class _Server(HTTPServer):
    handler: Callable[[dict[str, Any], FakeContext], dict[str, Any]]
    seen: list[tuple[str, str, int]]


class LambdaBridge:
    """start() -> the URL; `seen` lists (method, path, status) of every request; stop() ends it all."""

    def __init__(self) -> None:
        self._server: _Server | None = None
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="lambda-bridge", daemon=True)
        self.seen: list[tuple[str, str, int]] = []

    def start(self) -> str:
        self._thread.start()
        self._ready.wait(30)
        if self._server is None:
            raise RuntimeError("the Lambda API did not start") from self._failed
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)  # Mangum runs each request on this thread's loop
        try:
            sys.modules.pop(MODULE, None)
            module: ModuleType = importlib.import_module(MODULE)  # the cold start
            server = _Server(("127.0.0.1", 0), _Forward)
            server.handler, server.seen = module.handler, self.seen
            self._server = server
        except BaseException as exc:
            self._failed = exc
            self._ready.set()
            raise
        self._ready.set()
        try:
            server.serve_forever(poll_interval=0.05)
        finally:
            server.server_close()
            if hasattr(module.handler.app, "state"):
                loop.run_until_complete(module.handler.app.state.backend.close())
            loop.close()
            sys.modules.pop(MODULE, None)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
        self._thread.join(10)

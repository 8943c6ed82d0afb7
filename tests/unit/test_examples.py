"""The built-in example task types: results, payload validation, and the webhook against a local server."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from hexq.adapters.memory import MemoryBackend
from hexq.core.clock import FakeClock
from hexq.core.errors import ValidationError
from hexq.core.registry import registry
from hexq.core.services import SubmitRequest, TaskService
from hexq.functions import examples


def test_every_example_is_registered() -> None:
    for name in ("sleep", "echo", "fail", "checksum", "webhook"):
        assert name in registry
    assert registry.get("sleep").is_async
    assert not registry.get("checksum").is_async  # CPU work runs in a thread, off the loop


async def test_sleep_sleeps_and_reports() -> None:
    assert await examples.sleep({"seconds": 0.01}) == {"slept": 0.01}
    assert await examples.sleep({"seconds": 0}) == {"slept": 0.0}


@pytest.mark.parametrize("seconds", [-1, 61, "1", True, None, float("nan")])
async def test_sleep_rejects_bad_seconds(seconds: object) -> None:
    with pytest.raises(ValueError, match="seconds"):
        await examples.sleep({"seconds": seconds})


def test_echo_returns_the_payload() -> None:
    payload = {"a": [1, 2, {"b": None}], "c": "d"}
    assert examples.echo(payload) == payload


def test_fail_always_and_never() -> None:
    assert examples.fail({"probability": 0}) == {"probability": 0.0}
    with pytest.raises(RuntimeError, match="on purpose"):
        examples.fail({"probability": 1})


@pytest.mark.parametrize("probability", [-0.1, 1.5, "half"])
def test_fail_rejects_bad_probability(probability: object) -> None:
    with pytest.raises(ValueError, match="probability"):
        examples.fail({"probability": probability})


def test_checksum_matches_hashlib() -> None:
    one = examples.checksum({"data": "hello"})
    assert one == {"algorithm": "sha256", "rounds": 1, "digest": hashlib.sha256(b"hello").hexdigest()}
    digest = b"hello"
    for _ in range(3):
        digest = hashlib.sha512(digest).digest()
    assert examples.checksum({"data": "hello", "rounds": 3, "algorithm": "sha512"})["digest"] == digest.hex()


@pytest.mark.parametrize("payload, field", [
    ({"data": 5}, "data"),
    ({"data": "x", "rounds": 0}, "rounds"),
    ({"data": "x", "rounds": 100_001}, "rounds"),
    ({"data": "x", "rounds": 2.5}, "rounds"),
    ({"data": "x", "algorithm": "crc32"}, "algorithm"),
    ({"data": "x", "algorithm": "shake_128"}, "algorithm"),
])
def test_checksum_rejects_bad_payloads(payload: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        examples.checksum(payload)


# -- webhook ---------------------------------------------------------------------------------------
class _Hook(BaseHTTPRequestHandler):
    received: list[tuple[str, str, Any]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length)) if length else None
        self.received.append((self.path, self.headers["Content-Type"], body))
        status = {"/ok": 200, "/created": 201, "/fail": 500, "/moved": 302}.get(self.path, 404)
        self.send_response(status)
        if status == 302:
            self.send_header("Location", "/ok")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST  # so a followed redirect would be seen

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def hook_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A tiny HTTP server on 127.0.0.1 (the only address these tests talk to)."""
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    _Hook.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_webhook_posts_json_and_returns_the_status(hook_url: str) -> None:
    assert examples.webhook({"url": f"{hook_url}/ok", "body": {"n": 1}}) == {"status": 200}
    assert examples.webhook({"url": f"{hook_url}/created"}) == {"status": 201}
    assert _Hook.received == [("/ok", "application/json", {"n": 1}), ("/created", "application/json", {})]


@pytest.mark.parametrize("path, status", [("/fail", 500), ("/missing", 404), ("/moved", 302)])
def test_webhook_raises_on_non_2xx_so_the_task_retries(hook_url: str, path: str, status: int) -> None:
    with pytest.raises(RuntimeError, match=f"answered {status}"):
        examples.webhook({"url": f"{hook_url}{path}", "timeout": 5})
    assert [p for p, _, _ in _Hook.received] == [path]  # a redirect is not followed


@pytest.mark.parametrize("payload, field", [
    ({}, "url"),
    ({"url": "ftp://127.0.0.1/x"}, "url"),
    ({"url": "127.0.0.1:8000/x"}, "url"),
    ({"url": "http://127.0.0.1/x", "timeout": 31}, "timeout"),
    ({"url": "http://127.0.0.1/x", "timeout": 0}, "timeout"),
])
def test_webhook_rejects_bad_payloads_without_sending(payload: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        examples.webhook(payload)


@pytest.mark.parametrize(("type_", "payload"), [
    ("sleep", {"seconds": 1000}), ("fail", {"probability": 2}), ("checksum", {"data": 5}),
    ("checksum", {"rounds": 0}), ("webhook", {"url": "ftp://example.invalid/"}),
])
async def test_bad_example_payloads_are_refused_at_submit(type_: str, payload: dict[str, object]) -> None:
    clock = FakeClock()
    backend = MemoryBackend(clock)
    service = TaskService(backend, backend, registry, clock)
    with pytest.raises(ValidationError) as info:
        await service.submit(SubmitRequest(type_, payload))
    assert info.value.field == "payload"
    assert (await service.stats()).backlog == 0

"""Hostile input at the HTTP edge (RELIABILITY T18 huge bodies, T19 malformed input, T20 unknown task types).

T18 and T19 run against a real `hexq serve` process (uvicorn on a free 127.0.0.1 port, SQLite in tmp);
the Hypothesis fuzz runs in-process. Figures (time to 413, RSS delta, bytes the client got to send)
are printed; run with -s to see them.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from hexq.adapters.sqlite import SQLiteBackend
from hexq.core.clock import FakeClock, SystemClock
from hexq.core.registry import Registry
from hexq.core.services import SubmitRequest, TaskService
from hexq.functions.api import create_app
from hexq.functions.bootstrap import bootstrap
from hexq.functions.settings import Settings

pytestmark = pytest.mark.reliability

MiB = 1024 * 1024
from harness import report  # noqa: E402
from processes import stop  # noqa: E402
from served import Served, hexq_serve  # noqa: E402

CAP = 256 * 1024


# -- a real `hexq serve`: served.py


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with hexq_serve(tmp_path_factory.mktemp("serve")) as server:
        yield server


def nothing_enqueued(url: str) -> None:
    stats = httpx.get(f"{url}/v1/stats", timeout=10).json()
    assert stats["backlog"] == 0 and sum(stats["by_status"].values()) == 0, stats


# -- T18: huge bodies -------------------------------------------------------------------------------
def lazy_body(size: int, sent: list[int]) -> Iterator[bytes]:
    """A valid-looking submit of exactly `size` bytes, generated 64 KiB at a time; `sent` counts what was pulled."""
    head, tail = b'{"type":"echo","payload":{"x":"', b'"}}'
    chunk = b"a" * (64 * 1024)
    sent[0] += len(head)
    yield head
    remaining = size - len(head) - len(tail)
    while remaining > 0:
        piece = chunk[:remaining]
        remaining -= len(piece)
        sent[0] += len(piece)
        yield piece
    sent[0] += len(tail)
    yield tail


@pytest.mark.timeout(120)
@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
@pytest.mark.parametrize("size", [1 * MiB, 10 * MiB, 100 * MiB], ids=["1MiB", "10MiB", "100MiB"])
def test_a_huge_body_gets_413_without_being_read(served: Served, size: int, declared: bool) -> None:
    sent = [0]
    headers = {"content-type": "application/json"}
    if declared:
        headers["content-length"] = str(size)
    rss_before = served.rss_kib()
    started = time.perf_counter()
    with httpx.Client(timeout=60) as client:
        response = client.post(f"{served.url}/v1/tasks", content=lazy_body(size, sent), headers=headers)
    elapsed = time.perf_counter() - started
    rss_delta = (served.rss_kib() - rss_before) / 1024

    report(served.log.parent / "report.jsonl", "T18_huge_body", None, api=None, wall_s=elapsed,
           api_5xx=int(response.status_code >= 500), body_mib=size // MiB, content_length=declared,
           status=response.status_code, sent_mib=round(sent[0] / MiB, 2), rss_delta_mib=round(rss_delta, 1))
    assert response.status_code == 413
    assert response.json()["error"] == "body_too_large"
    assert response.json()["details"] == {"limit": CAP}
    assert rss_delta < 50
    nothing_enqueued(served.url)
    # httpx sends the whole body before it reads the answer, and uvicorn drains (and drops) the rest of a
    # refused body to keep the connection: the bounded RSS is what shows the app never buffered it. The
    # test below shows the 413 comes without the rest being sent at all.


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_the_413_arrives_before_the_rest_of_a_100_mib_body_is_sent(served: Served, declared: bool) -> None:
    """A raw socket sends the headers of a 100 MiB submit and only cap + 64 KiB of its body, then waits."""
    import socket
    from urllib.parse import urlsplit

    host, port = urlsplit(served.url).hostname, urlsplit(served.url).port
    framing = f"Content-Length: {100 * MiB}" if declared else "Transfer-Encoding: chunked"
    head = (f"POST /v1/tasks HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n{framing}\r\n\r\n"
            ).encode()
    piece = b"a" * (64 * 1024)
    sent = 0
    started = time.perf_counter()
    with socket.create_connection((host, port), timeout=15) as sock:
        sock.sendall(head)
        start = b'{"type":"echo","payload":{"x":"'
        sock.sendall(start if declared else b"%x\r\n%s\r\n" % (len(start), start))
        try:
            while sent <= CAP + 64 * 1024:
                sock.sendall(piece if declared else b"%x\r\n%s\r\n" % (len(piece), piece))
                sent += len(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed: read what it said
        answer = b""
        while b"\r\n\r\n" not in answer:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    elapsed = time.perf_counter() - started
    report(served.log.parent / "report.jsonl", "T18_raw_100_mib", None, api=None, wall_s=elapsed,
           content_length=declared, status_line=answer[:12].decode(errors="replace"), sent_kib=round(sent / 1024))
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    nothing_enqueued(served.url)


# -- T19: malformed input -----------------------------------------------------------------------------
DEEP = b'{"type":"echo","payload":{"x":' + b"[" * 10_000 + b"]" * 10_000 + b"}}"
MALFORMED: dict[str, tuple[bytes, dict[str, str], set[int], str]] = {
    "truncated": (b'{"type":"echo","payload":{"a":', {}, {400}, "bad_json"),
    "text/plain, not JSON": (b"type=echo", {"content-type": "text/plain"}, {400}, "bad_json"),
    "form-encoded": (b"type=echo&payload=1", {"content-type": "application/x-www-form-urlencoded"}, {400},
                     "bad_json"),
    "payload a string": (b'{"type":"echo","payload":"{}"}', {}, {422}, "validation_error"),
    "10,000 deep": (DEEP, {}, {400}, "bad_json"),
    "NaN": (b'{"type":"echo","payload":{"x":NaN}}', {}, {400}, "bad_json"),
    "Infinity": (b'{"type":"echo","delay":Infinity}', {}, {400}, "bad_json"),
    "invalid UTF-8": (b'{"type":"echo","payload":{"x":"\xff\xfe"}}', {}, {400}, "bad_json"),
    "overlong UTF-8": (b'{"type":"echo","payload":{"x":"\xc0\xaf"}}', {}, {400}, "bad_json"),
    "extra field attempts": (b'{"type":"echo","attempts":0}', {}, {422}, "validation_error"),
    "extra field status": (b'{"type":"echo","status":"succeeded"}', {}, {422}, "validation_error"),
    "top-level array": (b'[{"type":"echo"}]', {}, {400}, "bad_json"),
    "empty": (b"", {}, {400}, "bad_json"),
    "two objects": (b'{"type":"echo"}{"type":"echo"}', {}, {400}, "bad_json"),
    "pickle": (b"\x80\x04\x95\x0b\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01a\x94K\x01s.",
               {"content-type": "application/python-pickle"}, {400}, "bad_json"),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_input_is_a_4xx_and_enqueues_nothing(served: Served, name: str) -> None:
    body, headers, statuses, code = MALFORMED[name]
    answered: dict[str, int] = {}
    for path in ("/v1/tasks", "/v1/tasks:bulk"):
        if path.endswith("bulk") and code == "validation_error":
            body_ = b'{"tasks":[' + body + b"]}"
        else:
            body_ = body
        response = httpx.post(f"{served.url}{path}", content=body_,
                              headers={"content-type": "application/json", **headers}, timeout=30)
        answered[path] = response.status_code
        assert response.status_code in statuses, (path, response.text)
        assert response.json()["error"] == code
        if code == "validation_error":
            assert response.json()["details"]["field"]  # the field path is named
    nothing_enqueued(served.url)
    report(served.log.parent / "report.jsonl", "T19_malformed", None, api=None, wall_s=0.0, case=name,
           api_5xx=sum(status >= 500 for status in answered.values()), statuses=answered, error=code, enqueued=0)


# -- T19: fuzz every POST/PUT endpoint in-process -----------------------------------------------------------
def _registry() -> Registry:
    registry = Registry()

    @registry.task("echo")
    async def echo(payload: dict[str, Any]) -> dict[str, Any]:
        return payload

    return registry


@pytest.fixture(scope="module")
def fuzz_client() -> Iterator[TestClient]:
    container = bootstrap(Settings(backend_url="memory://", task_modules=()), clock=FakeClock(), registry=_registry())
    with TestClient(create_app(container), raise_server_exceptions=False) as client:
        yield client


SCALARS = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=16)
           | st.sampled_from(["echo", "nope", "", "*/5 * * * *", "@hourly", "0 0 31 2 *", "60 * * * *"]))
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                          max_size=3), max_leaves=10)
TASK = st.fixed_dictionaries({}, optional={
    "type": st.sampled_from(["echo", "nope"]) | JSON, "payload": st.dictionaries(st.text(max_size=4), JSON) | JSON,
    "priority": st.sampled_from(["low", "critical", 2, 7, True]) | JSON, "delay": JSON, "run_at": JSON,
    "max_attempts": st.integers() | JSON, "timeout": st.floats() | JSON, "idempotency_key": st.text() | JSON,
    "queue": st.text(max_size=70) | JSON, "attempts": JSON})
BULK = st.fixed_dictionaries({}, optional={"tasks": st.lists(TASK | JSON, max_size=4) | JSON, "extra": JSON})
REPLAY = st.fixed_dictionaries({}, optional={"ids": st.lists(st.text(max_size=40) | JSON, max_size=5) | JSON,
                                             "all": JSON})
SCHEDULE = st.fixed_dictionaries({}, optional={
    "spec": st.sampled_from(["*/5 * * * *", "@daily", "61 * * * *", "* * *", ""]) | JSON, "type": TASK.map(
        lambda t: t.get("type", "echo")), "payload": JSON, "queue": JSON, "priority": JSON, "enabled": JSON})
RAW = st.binary(max_size=300) | st.text(alphabet='{}[]":,0123456789.eE+-\\utrflnsaNIy \ud800\x00', max_size=80)


def _bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    text = value if isinstance(value, str) else json.dumps(value)
    return text.encode("utf-8", "surrogatepass")


NAMES = st.text(alphabet="abcXYZ09_.:-%~ ", min_size=1, max_size=70).filter(lambda s: s.strip("./") != "")
FUZZ = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.filter_too_much])
HEADERS = st.fixed_dictionaries({}, optional={
    "content-type": st.sampled_from(["application/json", "text/plain", "application/json; charset=latin-1", ""]),
    "idempotency-key": st.text(alphabet="abc-\t ", max_size=250)})


def _check(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert set(response.json()) == {"error", "message", "details"}


@FUZZ
@given(body=BULK | RAW | JSON, headers=HEADERS)
def test_fuzz_bulk_submit(fuzz_client: TestClient, body: Any, headers: dict[str, str]) -> None:
    _check(fuzz_client.post("/v1/tasks:bulk", content=_bytes(body), headers=headers))


@FUZZ
@given(body=TASK | RAW | JSON, headers=HEADERS)
def test_fuzz_submit_with_headers(fuzz_client: TestClient, body: Any, headers: dict[str, str]) -> None:
    _check(fuzz_client.post("/v1/tasks", content=_bytes(body), headers=headers))


@FUZZ
@given(body=REPLAY | RAW | JSON)
def test_fuzz_replay(fuzz_client: TestClient, body: Any) -> None:
    _check(fuzz_client.post("/v1/dead:replay", content=_bytes(body)))


@FUZZ
@given(name=NAMES, body=SCHEDULE | RAW | JSON)
def test_fuzz_put_schedule(fuzz_client: TestClient, name: str, body: Any) -> None:
    from urllib.parse import quote

    _check(fuzz_client.put(f"/v1/schedules/{quote(name, safe='')}", content=_bytes(body)))


@FUZZ
@given(task_id=NAMES, body=RAW)
def test_fuzz_cancel(fuzz_client: TestClient, task_id: str, body: Any) -> None:
    from urllib.parse import quote

    _check(fuzz_client.post(f"/v1/tasks/{quote(task_id, safe='')}:cancel", content=_bytes(body)))


# -- T20: unknown task types ------------------------------------------------------------------------
def test_the_api_refuses_an_unknown_task_type(served: Served) -> None:
    response = httpx.post(f"{served.url}/v1/tasks", json={"type": "does.not.exist"}, timeout=30)
    assert response.status_code == 422
    assert response.json()["error"] == "unknown_task_type"
    assert response.json()["details"] == {"field": "type"}
    nothing_enqueued(served.url)


async def _wait_for(check: Callable[[], Any], within: float) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.2)


@pytest.mark.timeout(90)
async def test_a_worker_without_the_type_dead_letters_it_at_once(tmp_path: Path) -> None:
    """Version skew: the task was submitted by a newer API; this worker's HEXQ_TASKS lacks its type."""
    registry = Registry()

    @registry.task("new.feature", max_attempts=5)
    async def new_feature(payload: dict[str, Any]) -> None:
        return None

    @registry.task("echo")  # the worker's HEXQ_TASKS (hexq.functions.examples) has this one
    async def echo(payload: dict[str, Any]) -> None:
        return None

    db = tmp_path / "hexq.db"
    backend = SQLiteBackend(str(db), SystemClock())
    try:
        service = TaskService(backend, backend, registry, SystemClock())
        ghost = (await service.submit(SubmitRequest(type="new.feature", payload={"n": 1}))).task
        known = (await service.submit(SubmitRequest(type="echo", payload={"n": 2}))).task
        env = {**os.environ, "HEXQ_BACKEND": f"sqlite:///{db}", "HEXQ_TASKS": "hexq.functions.examples",
               "HEXQ_IDLE_WAIT": "0.2", "HEXQ_LOG_LEVEL": "WARNING"}
        log = (tmp_path / "worker.log").open("wb")
        worker = subprocess.Popen([sys.executable, "-m", "hexq.functions.cli", "worker"],  # noqa: ASYNC220
                                  env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
        try:
            async def settled() -> bool:
                tasks = [await backend.get(ghost.id), await backend.get(known.id)]
                return all(t is not None and t.is_terminal for t in tasks)

            assert await _wait_for(settled, 60), (tmp_path / "worker.log").read_text()
        finally:
            stop(worker)
            log.close()
        dead = await backend.get(ghost.id)
        assert dead is not None
        assert dead.status == "dead"
        assert dead.error is not None and dead.error.startswith("unknown_task_type"), dead.error
        assert dead.attempts == 1 and dead.max_attempts == 5  # no retry: 0 retries for an unknown type
        report(tmp_path / "report.jsonl", "T20_unknown_type_at_the_worker", None, api=None, wall_s=0.0, accepted=2,
               completed=1, dlq=1, retries_for_unknown_type=dead.attempts - 1, error=dead.error)
        done = await backend.get(known.id)
        assert done is not None and done.status == "succeeded"
        assert worker.returncode == 0
    finally:
        await backend.close()

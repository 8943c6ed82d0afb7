"""The Lambda entry points, driven in-process with the sample events in infra/events/ and a fake context.

The Lambda modules build their container when imported (the cold start), so each test imports them
afresh under its own HEXQ_* environment (`load_lambda`) and closes what they opened afterwards. API and
worker get separate containers over one SQLite file, as two Lambda functions share a backend.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import math
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest
from botocore.stub import Stubber  # type: ignore[import-untyped]

from hexq.core.model import Priority, TaskStatus
from hexq.core.services import SubmitRequest
from hexq.functions.bootstrap import Container
from hexq.functions.lambda_invoker import PAYLOAD, LambdaInvoker
from hexq.functions.settings import Settings, env_name

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "infra" / "events"
PLACEHOLDER = "__TASK_ID__"
MALFORMED_MESSAGE = "2e1424d4-f796-459a-8184-9c92662be6da"  # the second record of sqs-batch.json
API_FLAVOURS = ["api-v2", "api-v1", "alb"]


@dataclass
class FakeContext:
    """What the Lambda runtime passes as `context`, as far as hexq and Mangum look at it."""

    remaining_ms: int = 60_000
    aws_request_id: str = "6f0c6bf8-0b7c-4c47-9b1e-3f1a2b3c4d5e"
    function_name: str = "hexq-WorkerFunction"
    log_stream_name: str = "2024/03/12/[$LATEST]0123456789abcdef"
    started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int(self.remaining_ms - (time.monotonic() - self.started) * 1000))


def event(name: str, task_id: str | None = None) -> dict[str, Any]:
    text = (EVENTS / f"{name}.json").read_text()
    loaded: dict[str, Any] = json.loads(text.replace(PLACEHOLDER, task_id) if task_id else text)
    return loaded


def body(response: dict[str, Any]) -> Any:
    assert not response.get("isBase64Encoded")
    return json.loads(str(response["body"]))


@pytest.fixture
def lambda_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean HEXQ_* environment on a fresh SQLite file, as template.yaml would set it."""
    for setting in fields(Settings):
        monkeypatch.delenv(env_name(setting.name), raising=False)
    db = tmp_path / "hexq.db"
    monkeypatch.setenv("HEXQ_BACKEND", f"sqlite:///{db}")
    monkeypatch.setenv("HEXQ_IDLE_WAIT", "0.05")
    monkeypatch.setenv("HEXQ_WORKER_FUNCTION", "hexq-WorkerFunction")
    monkeypatch.setenv("HEXQ_ALLOW_OPEN_API", "true")  # these tests run the API without keys
    return db


@pytest.fixture
def load_lambda(lambda_env: Path) -> Iterator[Callable[[str], ModuleType]]:
    """load_lambda("lambda_api") -> the module, imported now (a cold start); closed at teardown."""
    loaded: list[tuple[ModuleType, asyncio.AbstractEventLoop | None]] = []

    def load(name: str) -> ModuleType:
        qualified = f"functions.{name}"
        sys.modules.pop(qualified, None)
        loop = None
        if name == "lambda_api":  # Mangum runs on the thread's current loop: give it one of its own
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
        module = importlib.import_module(qualified)
        loaded.append((module, loop))
        return module

    yield load
    for module, loop in reversed(loaded):
        sys.modules.pop(module.__name__, None)
        if loop is None:
            module.handler.close()
        else:
            if hasattr(module.handler.app, "state"):  # not when the API refused to serve
                loop.run_until_complete(module.handler.app.state.backend.close())
            loop.close()
            asyncio.set_event_loop(None)


@pytest.fixture
def api(load_lambda: Callable[[str], ModuleType]) -> Callable[..., dict[str, Any]]:
    return load_lambda("lambda_api").handler  # type: ignore[no-any-return]


@pytest.fixture
def worker(load_lambda: Callable[[str], ModuleType]) -> ModuleType:
    return load_lambda("lambda_worker")


def submit(api: Callable[..., dict[str, Any]], flavour: str = "api-v2") -> str:
    response = api(event(f"{flavour}-submit"), FakeContext())
    assert response["statusCode"] == 202, response
    task = body(response)
    assert task["status"] == "queued"
    return str(task["id"])


# -- the API (Mangum) -------------------------------------------------------------------------------
@pytest.mark.parametrize("flavour", API_FLAVOURS)
def test_submit_run_and_read_a_task_through_each_event_kind(
        flavour: str, api: Callable[..., dict[str, Any]], worker: ModuleType) -> None:
    task_id = submit(api, flavour)

    report = worker.handler({}, FakeContext())

    assert report["claimed"] == 1 and report["succeeded"] == 1
    assert report["worker_id"] == f"lambda:{FakeContext().aws_request_id}"
    response = api(event(f"{flavour}-status", task_id), FakeContext())
    assert response["statusCode"] == 200
    task = body(response)
    assert (task["id"], task["status"], task["result"]) == (task_id, "succeeded", {"hello": "lambda"})


def test_api_responses_carry_headers_in_the_shape_of_each_event_kind(api: Callable[..., dict[str, Any]]) -> None:
    v2, v1, alb = (api(event(f"{flavour}-submit"), FakeContext()) for flavour in API_FLAVOURS)

    assert v2["headers"]["content-type"] == "application/json"
    assert v1["headers"]["content-type"] == "application/json" and "multiValueHeaders" in v1
    assert alb["headers"]["content-type"] == "application/json" and "multiValueHeaders" not in alb
    assert v2["headers"]["location"] == f"/v1/tasks/{body(v2)['id']}"


def test_api_errors_are_json_with_the_right_status(api: Callable[..., dict[str, Any]]) -> None:
    unknown_type = event("api-v2-submit")
    unknown_type["body"] = json.dumps({"type": "does.not.exist", "payload": {}})
    bad_json = event("api-v1-submit")
    bad_json["body"] = "{not json"

    assert api(unknown_type, FakeContext())["statusCode"] == 422
    assert body(api(bad_json, FakeContext()))["error"] == "bad_json"
    missing = api(event("api-v2-status", "0123456789abcdef"), FakeContext())
    assert missing["statusCode"] == 404 and body(missing)["error"] == "not_found"


def test_the_container_is_built_once_per_cold_start(load_lambda: Callable[[str], ModuleType]) -> None:
    module = load_lambda("lambda_api")
    backend = module.handler.app.state.backend

    for flavour in API_FLAVOURS:
        module.handler(event(f"{flavour}-submit"), FakeContext())

    assert module.handler.app.state.backend is backend
    assert module.handler.lifespan == "off"


# -- the API refuses to run open unless allowed (template.yaml's AllowOpenApi) ---------------------------
@pytest.mark.parametrize("allow", [None, "false", "False "])
def test_an_api_without_keys_answers_every_request_with_503_unless_allowed(
        load_lambda: Callable[[str], ModuleType], lambda_env: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture, allow: str | None) -> None:
    if allow is None:
        monkeypatch.delenv("HEXQ_ALLOW_OPEN_API")
    else:
        monkeypatch.setenv("HEXQ_ALLOW_OPEN_API", allow)
    api = load_lambda("lambda_api").handler

    responses = [api(event(f"{flavour}-{kind}", "0123456789abcdef"), FakeContext())
                 for flavour in API_FLAVOURS for kind in ("submit", "status")]

    assert {r["statusCode"] for r in responses} == {503}
    assert {body(r)["error"] for r in responses} == {"api_keys_required"}
    assert "AllowOpenApi=true" in body(responses[0])["message"] and "ApiKeys" in body(responses[0])["message"]
    assert not lambda_env.exists()  # the backend is never touched
    assert any("refusing to serve" in r.getMessage() for r in caplog.records if r.levelname == "ERROR")


def test_an_api_with_keys_serves_whatever_the_open_api_setting(load_lambda: Callable[[str], ModuleType],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from hexq.core.auth import Scope, entry, new_secret

    secret = new_secret()
    monkeypatch.setenv("HEXQ_API_KEYS", entry("ci", "acme", [Scope.SUBMIT, Scope.READ], secret))
    monkeypatch.setenv("HEXQ_ALLOW_OPEN_API", "false")
    api = load_lambda("lambda_api").handler
    anonymous = event("api-v2-submit")
    signed = event("api-v2-submit")
    signed["headers"]["authorization"] = f"Bearer {secret}"

    assert api(anonymous, FakeContext())["statusCode"] == 401
    assert api(signed, FakeContext())["statusCode"] == 202


def test_an_open_api_setting_other_than_true_or_false_stops_the_cold_start(
        lambda_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hexq.core.errors import ConfigurationError

    monkeypatch.setenv("HEXQ_ALLOW_OPEN_API", "yes")
    sys.modules.pop("hexq.functions.lambda_api", None)
    with pytest.raises(ConfigurationError, match="HEXQ_ALLOW_OPEN_API has value 'yes'"):
        importlib.import_module("hexq.functions.lambda_api")
    assert "hexq.functions.lambda_api" not in sys.modules


# -- the worker: direct invocations -----------------------------------------------------------------
def test_a_poller_trigger_with_nothing_queued_returns_an_empty_report(worker: ModuleType) -> None:
    report = worker.handler(event("worker-direct"), FakeContext())

    assert report["claimed"] == 0 and report["reason"] == "empty"


@pytest.mark.parametrize(("remaining", "expected"), [
    (300.0, (60.0, 180.0)),   # template.yaml's worker: HEXQ_BUDGET=60, HEXQ_GRACE=180, Timeout=300
    (63.0, (30.0, 30.0)),     # the budget takes at most half of what is left after the margin
    (10.0, (3.5, 3.5)),
    (2.0, (0.0, 0.0)),        # less than the margin: claim nothing
])
def test_time_plan_fits_budget_grace_and_margin_before_the_deadline(
        worker: ModuleType, remaining: float, expected: tuple[float, float]) -> None:
    settings = Settings(budget=60.0, grace=180.0)

    budget, grace = worker.time_plan(settings, remaining)

    assert (budget, grace) == pytest.approx(expected)
    assert budget + grace + worker.SAFETY_MARGIN <= max(remaining, worker.SAFETY_MARGIN)


def _submit(handler: Any, container: Container, request: SubmitRequest) -> str:
    return str(handler.loop.run_until_complete(container.tasks.submit(request)).task.id)


def _get(handler: Any, container: Container, task_id: str) -> Any:
    return handler.loop.run_until_complete(container.backend.get(task_id))


@pytest.fixture
def memory_worker(worker: ModuleType, container: Container) -> Iterator[Any]:
    """The worker handler over the test registry on memory:// (one process is enough here)."""
    handler = worker.WorkerHandler(container)
    yield handler
    handler.close()


def test_running_tasks_are_released_before_the_lambda_deadline(memory_worker: Any, container: Container,
                                                                worker: ModuleType) -> None:
    task_id = _submit(memory_worker, container, SubmitRequest("slow", {"seconds": 30}))
    context = FakeContext(remaining_ms=int((worker.SAFETY_MARGIN + 0.6) * 1000))  # budget 0.3 s, grace 0.3 s

    report = memory_worker({}, context)

    assert (report["claimed"], report["released"]) == (1, 1)
    assert context.get_remaining_time_in_millis() > worker.SAFETY_MARGIN * 1000 - 500
    task = _get(memory_worker, container, task_id)
    assert task.status is TaskStatus.QUEUED and task.attempts == 1


def test_no_time_left_means_nothing_is_claimed(memory_worker: Any, container: Container) -> None:
    task_id = _submit(memory_worker, container, SubmitRequest("echo", {}))

    report = memory_worker({}, FakeContext(remaining_ms=1_000))

    assert (report["claimed"], report["reason"]) == (0, "budget")
    assert _get(memory_worker, container, task_id).status is TaskStatus.QUEUED


def test_one_event_loop_serves_every_warm_invocation(memory_worker: Any, container: Container) -> None:
    loop = memory_worker.loop
    for _ in range(3):
        _submit(memory_worker, container, SubmitRequest("echo", {}))
        assert memory_worker({}, FakeContext())["succeeded"] == 1

    assert memory_worker.loop is loop and not loop.is_closed()


# -- the worker: SQS batches ------------------------------------------------------------------------
def sqs_batch(*bodies: str) -> dict[str, Any]:
    template = event("sqs-batch")["Records"][0]
    return {"Records": [dict(template, messageId=f"m{i}", body=b) for i, b in enumerate(bodies)]}


def reference(task_id: str) -> str:
    return json.dumps({"task_id": task_id})


def failures(answer: dict[str, Any]) -> list[str]:
    assert set(answer) == {"batchItemFailures"}
    return [item["itemIdentifier"] for item in answer["batchItemFailures"]]


def test_an_sqs_batch_fails_only_its_malformed_record(api: Callable[..., dict[str, Any]], worker: ModuleType) -> None:
    task_id = submit(api)

    answer = worker.handler(event("sqs-batch", task_id), FakeContext())

    assert failures(answer) == [MALFORMED_MESSAGE]
    assert body(api(event("api-v2-status", task_id), FakeContext()))["status"] == "succeeded"


def test_unknown_tasks_fail_their_records_and_finished_ones_are_done(memory_worker: Any, container: Container) -> None:
    done = _submit(memory_worker, container, SubmitRequest("echo", {}))
    memory_worker({}, FakeContext())

    answer = memory_worker(sqs_batch(reference("no-such-task"), reference(done), reference(done)), FakeContext())

    assert failures(answer) == ["m0"]


def test_a_named_task_that_another_task_outranks_stays_queued_and_fails_its_record(
        memory_worker: Any, container: Container) -> None:
    """The honest limit of the stand-in: claims follow priority, not the ids the batch names."""
    named = _submit(memory_worker, container, SubmitRequest("echo", {"n": 1}, priority=Priority.LOW))
    urgent = _submit(memory_worker, container, SubmitRequest("echo", {"n": 2}, priority=Priority.CRITICAL))

    first = memory_worker(sqs_batch(reference(named)), FakeContext())
    again = memory_worker(sqs_batch(reference(named)), FakeContext())  # SQS delivers the record again

    assert failures(first) == ["m0"] and failures(again) == []
    assert _get(memory_worker, container, urgent).status is TaskStatus.SUCCEEDED
    assert _get(memory_worker, container, named).status is TaskStatus.SUCCEEDED


def test_a_batch_claims_no_more_tasks_than_it_names(memory_worker: Any, container: Container) -> None:
    ids = [_submit(memory_worker, container, SubmitRequest("echo", {"n": n})) for n in range(5)]

    answer = memory_worker(sqs_batch(reference(ids[0]), reference(ids[1])), FakeContext())

    assert failures(answer) == []
    statuses = [_get(memory_worker, container, task_id).status for task_id in ids]
    assert statuses == [TaskStatus.SUCCEEDED] * 2 + [TaskStatus.QUEUED] * 3


def test_a_batch_of_only_bad_records_runs_nothing(memory_worker: Any, container: Container) -> None:
    queued = _submit(memory_worker, container, SubmitRequest("echo", {}))

    answer = memory_worker(sqs_batch("", "[]", reference("missing")), FakeContext())

    assert failures(answer) == ["m0", "m1", "m2"]
    assert _get(memory_worker, container, queued).status is TaskStatus.QUEUED


@pytest.mark.parametrize("text", [
    "", "not json", "null", "[]", '"abc"', "{}", '{"id": "abc"}', '{"task_id": 5}', '{"task_id": ""}',
    '{"task_id": null}', json.dumps({"task_id": "x" * 257}), "[" * 100_000, "{" * 50_000 + "}" * 50_000,
])
def test_task_reference_refuses_anything_but_a_task_id(worker: ModuleType, text: str) -> None:
    assert worker.task_reference(text) is None


def test_task_reference_reads_the_task_id(worker: ModuleType) -> None:
    assert worker.task_reference('{"task_id": "abc123", "extra": 1}') == "abc123"
    assert worker.task_reference(None) is None


@pytest.mark.parametrize(("event_", "is_batch"), [
    ({}, False),
    ({"source": "hexq.poller"}, False),
    ({"Records": []}, False),
    ({"Records": [{"eventSource": "aws:s3"}]}, False),
    ({"Records": [{"eventSource": "aws:sqs", "body": "{}", "messageId": "a"}]}, True),
])
def test_only_sqs_records_count_as_a_batch(worker: ModuleType, event_: dict[str, Any], is_batch: bool) -> None:
    assert worker.is_sqs_batch(event_) is is_batch


# -- warm invocations on Redis: loop-bound clients survive between calls ----------------------------
@pytest.mark.redis
def test_warm_invocations_reuse_their_redis_connections(redis_url: str, monkeypatch: pytest.MonkeyPatch,
                                                         load_lambda: Callable[[str], ModuleType]) -> None:
    """redis.asyncio pools belong to the loop that opened them: one loop per process keeps them usable."""
    partition = f"lambda{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("HEXQ_BACKEND", f"{redis_url}{'&' if '?' in redis_url else '?'}partition={partition}")
    api = load_lambda("lambda_api").handler
    worker = load_lambda("lambda_worker").handler

    for flavour in API_FLAVOURS:  # each round: a warm API call, a warm worker call on the same client
        task_id = submit(api, flavour)
        assert worker({}, FakeContext())["succeeded"] == 1
        assert body(api(event(f"{flavour}-status", task_id), FakeContext()))["status"] == "succeeded"
    assert failures(worker(sqs_batch(reference(submit(api)), "bad"), FakeContext())) == ["m1"]


# -- the poller -------------------------------------------------------------------------------------
def test_the_scheduled_tick_reports_housekeeping(load_lambda: Callable[[str], ModuleType]) -> None:
    poller = load_lambda("lambda_poller")

    report = poller.handler(event("schedule-tick"), FakeContext())

    assert report == {"promoted": 0, "recovered": 0, "fired": 0, "purged": 0, "backlog": 0, "invoked": 0}


def test_the_poller_refuses_to_start_without_a_worker_function(load_lambda: Callable[[str], ModuleType]) -> None:
    from hexq.core.errors import ConfigurationError

    poller = load_lambda("lambda_poller")
    unnamed = replace(poller.handler.container, settings=replace(poller.handler.container.settings, worker_function=""))
    with pytest.raises(ConfigurationError, match="HEXQ_WORKER_FUNCTION"):
        poller.make_handler(unnamed)


def test_a_poller_told_not_to_invoke_does_housekeeping_only(load_lambda: Callable[[str], ModuleType]) -> None:
    from hexq.core.errors import ConfigurationError

    poller = load_lambda("lambda_poller")
    container = poller.handler.container
    sweeper = poller.make_handler(replace(container, settings=replace(container.settings, poller_invokes=False)))
    try:
        sweeper.loop.run_until_complete(sweeper.container.tasks.submit(SubmitRequest(type="echo", payload={})))
        report = sweeper(event("schedule-tick"), FakeContext())
    finally:
        sweeper.loop.close()  # not sweeper.close(): the container is the module handler's
    assert (report["backlog"], report["invoked"]) == (1, 0)
    with pytest.raises(ConfigurationError, match="HEXQ_POLLER_INVOKES has value 'maybe'"):
        Settings.from_env({"HEXQ_POLLER_INVOKES": "maybe"})


def lambda_client() -> Any:
    return boto3.client("lambda", region_name="us-east-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing")


def expect_invokes(stubber: Stubber, n: int, function: str = "hexq-WorkerFunction") -> None:
    for _ in range(n):
        stubber.add_response("invoke", {"StatusCode": 202},
                             {"FunctionName": function, "InvocationType": "Event", "Payload": PAYLOAD})


@pytest.mark.parametrize(("backlog", "cap", "expected"), [(25, 5, 3), (25, 2, 2), (10, 5, 1), (0, 5, 0)])
def test_a_tick_starts_ceil_backlog_over_batch_workers_up_to_the_cap(
        load_lambda: Callable[[str], ModuleType], make_container: Callable[..., Container],
        backlog: int, cap: int, expected: int) -> None:
    poller = load_lambda("lambda_poller")
    container = make_container(batch=10, max_invocations=cap)
    client = lambda_client()
    handler = poller.PollerHandler(container, LambdaInvoker("hexq-WorkerFunction", cap=cap, client=client))
    if backlog:
        handler.loop.run_until_complete(container.tasks.submit_bulk([SubmitRequest("echo", {})] * backlog))

    with Stubber(client) as stubber:
        expect_invokes(stubber, expected)
        report = handler(event("schedule-tick"), FakeContext())
        stubber.assert_no_pending_responses()
    handler.close()

    assert (report["backlog"], report["invoked"]) == (backlog, expected)
    assert expected == min(math.ceil(backlog / 10), cap)


# -- LambdaInvoker ----------------------------------------------------------------------------------
async def test_the_invoker_sends_async_invokes_capped() -> None:
    client = lambda_client()
    with Stubber(client) as stubber:
        expect_invokes(stubber, 3, "w")
        assert await LambdaInvoker("w", cap=3, client=client).trigger(7) == 3
        stubber.assert_no_pending_responses()


async def test_a_throttled_invoke_stops_the_round_and_counts_what_started() -> None:
    client = lambda_client()
    with Stubber(client) as stubber:
        expect_invokes(stubber, 1, "w")
        stubber.add_client_error("invoke", "TooManyRequestsException", "Rate exceeded", 429)
        assert await LambdaInvoker("w", cap=5, client=client).trigger(5) == 1
        stubber.assert_no_pending_responses()


class _ThreadRecordingClient:
    def __init__(self) -> None:
        self.threads: list[int] = []

    def invoke(self, **kwargs: Any) -> dict[str, Any]:
        self.threads.append(threading.get_ident())
        return {"StatusCode": 202}


async def test_invokes_run_off_the_event_loop_thread() -> None:
    client = _ThreadRecordingClient()

    assert await LambdaInvoker("w", cap=2, client=client).trigger(2) == 2

    assert client.threads and threading.get_ident() not in client.threads


async def test_zero_invocations_touch_no_client() -> None:
    assert await LambdaInvoker("w", cap=0, client=object()).trigger(3) == 0
    assert await LambdaInvoker("w", cap=3, client=object()).trigger(0) == 0


def test_the_client_is_created_on_first_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    invoker = LambdaInvoker("w", cap=1)

    client = invoker._lambda()

    assert client.meta.service_model.service_name == "lambda"
    assert invoker._lambda() is client


# -- cold start -------------------------------------------------------------------------------------
def test_the_lambda_modules_import_no_aws_sdk_unless_the_aws_backend_is_chosen(lambda_env: Path) -> None:
    code = ("import sys, hexq.functions.lambda_api, hexq.functions.lambda_worker, hexq.functions.lambda_poller; "
            "print(sorted(m for m in ('boto3', 'botocore', 'redis', 'uvicorn') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-W", "error", "-c", code], cwd=ROOT, capture_output=True, text=True,
                            timeout=60, check=True)

    assert result.stdout.strip() == "[]"
    assert not lambda_env.exists()  # nothing connects at import


# -- the same events on the distributed backends ------------------------------------------------------
AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
           "AWS_CONFIG_FILE": "/nonexistent/hexq-test", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/hexq-test"}


@pytest.fixture(params=[pytest.param("redis", marks=pytest.mark.redis), pytest.param("aws", marks=pytest.mark.aws)])
def distributed_env(request: pytest.FixtureRequest, lambda_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """HEXQ_BACKEND on Redis (a fresh partition) or on moto's SQS + DynamoDB, set before any cold start."""
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        monkeypatch.setenv("HEXQ_BACKEND", f"{url}{'&' if '?' in url else '?'}partition=events{os.getpid()}")
        yield "redis"
        return
    moto = pytest.importorskip("moto")
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HEXQ_BACKEND", "aws://?region=us-east-1&prefix=hexq-events&long_poll=1")
    with moto.mock_aws():
        yield "aws"


@pytest.mark.parametrize("flavour", API_FLAVOURS)
def test_each_event_kind_on_redis_and_aws(distributed_env: str, flavour: str,
                                          load_lambda: Callable[[str], ModuleType]) -> None:
    api_module = load_lambda("lambda_api")
    backend = api_module.handler.app.state.backend
    if distributed_env == "aws":  # on AWS template.yaml makes the table and queues
        asyncio.get_event_loop().run_until_complete(backend.create_resources())
    worker_module = load_lambda("lambda_worker")
    task_id = submit(api_module.handler, flavour)

    report = worker_module.handler({}, FakeContext())

    assert report["succeeded"] >= 1
    task = body(api_module.handler(event(f"{flavour}-status", task_id), FakeContext()))
    assert (task["id"], task["status"]) == (task_id, "succeeded")


@pytest.fixture
def aws_env(lambda_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    moto = pytest.importorskip("moto")
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HEXQ_BACKEND", "aws://?region=us-east-1&prefix=hexq-batch&long_poll=1")
    with moto.mock_aws():
        yield


@pytest.mark.aws
def test_on_aws_an_sqs_batch_runs_exactly_the_tasks_it_names(aws_env: None,
                                                            load_lambda: Callable[[str], ModuleType]) -> None:
    api_module = load_lambda("lambda_api")
    asyncio.get_event_loop().run_until_complete(api_module.handler.app.state.backend.create_resources())
    worker_module = load_lambda("lambda_worker")
    ids = []
    for priority in ("low", "critical"):
        response = api_module.handler(_post_event({"type": "echo", "payload": {}, "priority": priority}), FakeContext())
        ids.append(body(response)["id"])
    named, urgent = ids

    answer = worker_module.handler(sqs_batch(reference(named)), FakeContext())

    assert failures(answer) == []  # the named low-priority task ran although a critical one waits
    status = {i: body(api_module.handler(event("api-v2-status", i), FakeContext()))["status"] for i in ids}
    assert status == {named: "succeeded", urgent: "queued"}


def _post_event(payload: dict[str, Any]) -> dict[str, Any]:
    submit_event = event("api-v2-submit")
    submit_event["body"] = json.dumps(payload)
    submit_event["isBase64Encoded"] = False
    return submit_event


# -- the dashboard through the Lambda API ---------------------------------------------------------------
def get_event(path: str, accept: str) -> dict[str, Any]:
    """An API Gateway v2 GET of `path` (the status sample with its path and Accept swapped)."""
    request = event("api-v2-status")
    request["rawPath"] = request["requestContext"]["http"]["path"] = path
    request["pathParameters"] = {"proxy": path.lstrip("/")}
    request["headers"]["accept"] = accept
    return request


def test_the_lambda_api_serves_the_dashboard_and_its_static_files(api: Callable[..., dict[str, Any]]) -> None:
    page = api(get_event("/", "text/html,application/xhtml+xml,*/*;q=0.8"), FakeContext())
    script = api(get_event("/ui/static/app.js", "*/*"), FakeContext())
    links = api(get_event("/", "application/json"), FakeContext())

    assert page["statusCode"] == 200 and page["headers"]["content-type"].startswith("text/html")
    assert "default-src 'self'" in page["headers"]["content-security-policy"]
    assert 'data-stream="0"' in page["body"]  # behind API Gateway the page polls: responses are buffered
    assert script["statusCode"] == 200 and script["headers"]["content-type"].startswith("text/javascript")
    assert "async function main" in script["body"]
    assert body(links)["name"] == "hexq"


def test_the_lambda_api_answers_the_event_stream_with_one_snapshot(api: Callable[..., dict[str, Any]]) -> None:
    response = api(get_event("/v1/events", "text/event-stream"), FakeContext())

    assert response["statusCode"] == 200 and response["headers"]["content-type"].startswith("text/event-stream")
    assert response["body"].count("event: snapshot") == 1

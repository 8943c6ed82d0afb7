"""template.yaml's IAM policies against what the functions really call: every AWS call is allowed, every
permission is used.

The real Lambda handlers (hexq.functions.lambda_api's Mangum handler, hexq.functions.lambda_worker with a direct
invocation and an SQS batch, hexq.functions.lambda_poller) run on moto (mock_aws) with the environment
template.yaml gives each function, over one stack's table and queues. Each function's backend gets its
clients from the production factory (hexq.adapters.aws.boto3_factory) with a `before-parameter-build` hook
that records every operation and its parameters, so the calls are attributed to the function that made
them. Each operation is then mapped to the IAM actions and resources AWS authorises it by (the Service
Authorization Reference: SQS batch calls need the single action, a DynamoDB transaction the action of
each item, a Query on an index the index's ARN) and checked against that function's statements, as the
template evaluates for the stack. The reverse check: every action and every resource a statement grants
is needed by some call (or, for the worker, by its SQS event sources, which Lambda polls with the
function's role), so a permission nothing uses fails the test too.

The scenario covers what the functions do: submit (plain, idempotent, delayed, bulk), reads, cancel,
schedules (put/get/list/delete and a firing), pausing and resuming a queue, a worker invocation and an SQS
batch, dead letters and replay, and a poller tick that promotes, re-sends, recovers a lost lease, fires and
purges.
"""

from __future__ import annotations

import asyncio
import copy
import importlib
import json
import re
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import moto
import pytest

from hexq.adapters.aws import AwsBackend, boto3_factory, parse
from hexq.adapters.memory import MemoryBackend
from hexq.core.auth import Scope, entry, new_secret
from hexq.core.clock import FakeClock
from hexq.core.registry import Registry, TaskSpec
from hexq.functions.bootstrap import Container, bootstrap
from hexq.functions.settings import Settings
from tests.conftest import make_registry
from tests.contract.conftest import fake_aws_credentials
from tests.functions.test_template import TEMPLATE, Stack

pytestmark = pytest.mark.aws

EVENTS = Path(__file__).resolve().parents[2] / "infra" / "events"
STACK = "hexq-iam"
FUNCTIONS = ("ApiFunction", "WorkerFunction", "PollerFunction")
PRIORITIES = ("low", "normal", "high", "critical")
DAY = 86_400.0

# SAM policy templates, expanded as SAM does: samtranslator/policy_templates_data/policy_templates.json
# of aws/serverless-application-model (read at commit 013ec109893d6fbb6ea2e148f37f1f5eb34471a1). A template
# not listed here fails the test: copy its definition from that file rather than guess what it grants.
SAM_TEMPLATES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "DynamoDBCrudPolicy": (
        ("dynamodb:GetItem", "dynamodb:DeleteItem", "dynamodb:PutItem", "dynamodb:Scan", "dynamodb:Query",
         "dynamodb:UpdateItem", "dynamodb:BatchWriteItem", "dynamodb:BatchGetItem", "dynamodb:DescribeTable",
         "dynamodb:ConditionCheckItem"),
        ("arn:aws:dynamodb:{region}:{account}:table/{TableName}",
         "arn:aws:dynamodb:{region}:{account}:table/{TableName}/index/*")),
}

# What Lambda's SQS event source mapping does with the function's execution role (Lambda developer guide,
# "Using Lambda with Amazon SQS": the execution role needs these three on the queue).
EVENT_SOURCE_ACTIONS = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes")


# -- from operations to IAM actions -------------------------------------------------------------------
@dataclass(frozen=True)
class Call:
    service: str
    operation: str
    params: dict[str, Any]


@dataclass(frozen=True)
class Need:
    action: str
    resource: str
    why: str


_DYNAMODB_SINGLE = frozenset({"GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan", "DescribeTable"})
_TRANSACT_ITEM = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
                  "ConditionCheck": "ConditionCheckItem", "Get": "GetItem"}
# SQS batch calls have no IAM action of their own: they are authorised by the single action.
_SQS = {"GetQueueUrl": "GetQueueUrl", "SendMessage": "SendMessage", "SendMessageBatch": "SendMessage",
        "ReceiveMessage": "ReceiveMessage", "DeleteMessage": "DeleteMessage", "DeleteMessageBatch": "DeleteMessage",
        "ChangeMessageVisibility": "ChangeMessageVisibility",
        "ChangeMessageVisibilityBatch": "ChangeMessageVisibility", "GetQueueAttributes": "GetQueueAttributes"}


def needs(stack: Stack, call: Call) -> list[Need]:
    """The IAM actions, on which resources, that AWS checks before it serves `call`."""
    why, params = f"{call.service}.{call.operation}", call.params
    arn = f"arn:aws:{{}}:{stack.region}:{stack.account}:{{}}"
    if call.service == "dynamodb":
        def table(name: str, index: str | None = None) -> str:
            return arn.format("dynamodb", f"table/{name}" + (f"/index/{index}" if index else ""))

        if call.operation in _DYNAMODB_SINGLE:
            return [Need(f"dynamodb:{call.operation}", table(params["TableName"], params.get("IndexName")), why)]
        if call.operation in ("BatchWriteItem", "BatchGetItem"):
            return [Need(f"dynamodb:{call.operation}", table(name), why) for name in params["RequestItems"]]
        if call.operation in ("TransactWriteItems", "TransactGetItems"):
            return [Need(f"dynamodb:{_TRANSACT_ITEM[kind]}", table(item["TableName"]), f"{why} {kind}")
                    for each in params["TransactItems"] for kind, item in each.items()]
    if call.service == "sqs" and call.operation in _SQS:
        queue = params["QueueName"] if call.operation == "GetQueueUrl" else params["QueueUrl"].rsplit("/", 1)[1]
        return [Need(f"sqs:{_SQS[call.operation]}", arn.format("sqs", queue), why)]
    if call.service == "lambda" and call.operation == "Invoke":
        name = params["FunctionName"]
        function = name if name.startswith("arn:") else arn.format("lambda", f"function:{name}")
        return [Need("lambda:InvokeFunction", function, why)]
    raise AssertionError(f"no IAM mapping for {why}: add it here, from the Service Authorization Reference")


def event_source_needs(stack: Stack, function: str) -> list[Need]:
    """What the SQS event source mappings of `function` (those whose Condition holds) need from its role."""
    found = []
    for name, resource in stack.template["Resources"].items():
        if resource["Type"] != "AWS::Lambda::EventSourceMapping":
            continue
        if "Condition" in resource and not stack.condition(resource["Condition"]):
            continue
        properties = stack.value(resource["Properties"])
        if properties["FunctionName"] == stack.ref(function):
            found += [Need(action, properties["EventSourceArn"], f"event source {name}")
                      for action in EVENT_SOURCE_ACTIONS]
    return found


# -- the template's statements --------------------------------------------------------------------------
def statements(stack: Stack, function: str) -> list[dict[str, Any]]:
    """`function`'s policy statements as the stack evaluates them, SAM policy templates expanded."""
    found: list[dict[str, Any]] = []
    for policy in stack.value(stack.template["Resources"][function]["Properties"].get("Policies", [])):
        assert isinstance(policy, dict), f"{function}: a managed policy ({policy}) cannot be checked here"
        if "Statement" in policy:
            found += policy["Statement"]
            continue
        (name, args), = policy.items()
        assert name in SAM_TEMPLATES, f"{function}: SAM policy template {name} is not known to this test"
        actions, resources = SAM_TEMPLATES[name]
        fill = {"region": stack.region, "account": stack.account, **args}
        found.append({"Effect": "Allow", "Action": list(actions), "Resource": [r.format(**fill) for r in resources]})
    for statement in found:
        assert statement["Effect"] == "Allow" and set(statement) <= {"Sid", "Effect", "Action", "Resource"}, statement
    return found


def listed(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def matches(pattern: str, value: str, *, case: bool = True) -> bool:
    """IAM's wildcards: * any run of characters, ? one character. Actions compare case-insensitively."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, 0 if case else re.IGNORECASE) is not None


def grants(statement: dict[str, Any], action: str, resource: str) -> bool:
    return (any(matches(p, action, case=False) for p in listed(statement["Action"]))
            and any(matches(p, resource) for p in listed(statement["Resource"])))


def denied(stack: Stack, function: str, wanted: list[Need]) -> list[str]:
    mine = statements(stack, function)
    return sorted({f"{function}: {n.why} needs {n.action} on {n.resource}" for n in wanted
                   if not any(grants(s, n.action, n.resource) for s in mine)})


def unused(stack: Stack, function: str, wanted: list[Need]) -> list[str]:
    """Actions and resources of `function`'s statements that no call (and no event source) needs."""
    problems = []
    for statement in statements(stack, function):
        label = statement.get("Sid", statement["Action"])
        actions, resources = listed(statement["Action"]), listed(statement["Resource"])
        for action in actions:
            if not any(matches(action, n.action, case=False) and any(matches(r, n.resource) for r in resources)
                       for n in wanted):
                problems.append(f"{function} {label}: {action} is granted but nothing uses it")
        for resource in resources:
            if not any(matches(resource, n.resource) and any(matches(a, n.action, case=False) for a in actions)
                       for n in wanted):
                problems.append(f"{function} {label}: {resource} is granted but nothing uses it")
    return problems


# -- recording ----------------------------------------------------------------------------------------
@dataclass
class Recorder:
    """Every operation the clients of each function make, before botocore builds the request."""

    calls: dict[str, list[Call]] = field(default_factory=lambda: {f: [] for f in FUNCTIONS})
    lock: threading.Lock = field(default_factory=threading.Lock)  # backends call from worker threads

    def attach(self, function: str, client: Any) -> Any:
        def hook(params: dict[str, Any], model: Any, **_: Any) -> None:
            call = Call(model.service_model.endpoint_prefix, model.name, copy.deepcopy(params))
            with self.lock:
                self.calls[function].append(call)

        client.meta.events.register("before-parameter-build", hook)  # this client's own emitter
        return client

    def operations(self, function: str) -> set[str]:
        return {f"{c.service}.{c.operation}" for c in self.calls[function]}


class Context:
    """The parts of Lambda's context the handlers read."""

    aws_request_id = "0f6e1c2a-iam-test"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


def http_event(method: str, path: str, secret: str, body: Any = None, query: str = "") -> dict[str, Any]:
    """An HTTP API (payload v2) event, as API Gateway sends it, with the caller's key."""
    event: dict[str, Any] = json.loads((EVENTS / "api-v2-submit.json").read_text())
    event["rawPath"], event["rawQueryString"] = path, query
    event["requestContext"]["http"].update(method=method, path=path)
    event["pathParameters"] = {"proxy": path.lstrip("/")}
    event["headers"]["authorization"] = f"Bearer {secret}"
    event["body"] = None if body is None else json.dumps(body)
    event["headers"].pop("content-length")
    return event


def sqs_event(*task_ids: str) -> dict[str, Any]:
    record = json.loads((EVENTS / "sqs-batch.json").read_text())["Records"][0]
    return {"Records": [dict(record, messageId=f"m{i}", body=json.dumps({"task_id": task_id}))
                        for i, task_id in enumerate(task_ids)]}


# -- the stack under moto --------------------------------------------------------------------------------
COLD_START_ENV = {"HEXQ_BACKEND": "memory://", "HEXQ_TASKS": "", "HEXQ_WORKER_FUNCTION": "unused",
                  "HEXQ_ALLOW_OPEN_API": "true"}
"""The environment of the modules' own cold starts: their module-level handlers are not the ones checked."""


@dataclass
class Deployed:
    """The three functions of one stack, built as their cold starts build them, and what they called."""

    stack: Stack
    clock: FakeClock
    registry: Registry
    modules: dict[str, Any]
    secret: str
    loop: asyncio.AbstractEventLoop  # the API's: Mangum runs on the thread's current loop
    recorder: Recorder = field(default_factory=Recorder)
    handlers: dict[str, Any] = field(default_factory=dict)

    def env(self, function: str) -> dict[str, str]:
        """What template.yaml puts in `function`'s environment; workers' idle wait shortened for the test."""
        return {**self.stack.function_env(function), "HEXQ_IDLE_WAIT": "0.05"}

    def container(self, function: str, backend: Any = None) -> Container:
        settings = Settings.from_env(self.env(function))
        if backend is None:
            config = parse(settings.backend_url)
            make = boto3_factory(config)  # the production clients, each with the recorder's hook
            backend = AwsBackend(config, self.clock,
                                 client_factory=lambda service: self.recorder.attach(function, make(service)))
        return bootstrap(settings, clock=self.clock, registry=self.registry, backend=backend)

    def start(self, backend: Any = None) -> None:
        """Each function's handler, from its module's make_handler over its own container."""
        self.handlers["ApiFunction"] = self.modules["lambda_api"].make_handler(self.container("ApiFunction", backend))
        self.handlers["WorkerFunction"] = self.modules["lambda_worker"].make_handler(
            self.container("WorkerFunction", backend))
        self.handlers["PollerFunction"] = self.modules["lambda_poller"].make_handler(
            self.container("PollerFunction", backend))

    def api(self, method: str, path: str, body: Any = None, query: str = "", *, expect: int = 200) -> Any:
        response = self.handlers["ApiFunction"](http_event(method, path, self.secret, body, query), Context())
        assert response["statusCode"] == expect, response
        return json.loads(response["body"]) if response.get("body") else None

    def submit(self, **body: Any) -> str:
        return str(self.api("POST", "/v1/tasks", {"type": "echo", "payload": {}, **body}, expect=202)["id"])

    def worker(self, event: dict[str, Any]) -> dict[str, Any]:
        return dict(self.handlers["WorkerFunction"](event, Context()))

    def tick(self) -> dict[str, Any]:
        return dict(self.handlers["PollerFunction"](json.loads((EVENTS / "schedule-tick.json").read_text()),
                                                    Context()))

    def close(self) -> None:
        for name in ("WorkerFunction", "PollerFunction"):
            if name in self.handlers:
                self.handlers[name].close()
        api = self.handlers.get("ApiFunction")
        if api is not None and hasattr(api.app, "state"):
            self.loop.run_until_complete(api.app.state.backend.close())


class Cloud:
    """moto's AWS, fake credentials, and the Lambda modules as a cold start imports them."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        for name, value in COLD_START_ENV.items():
            monkeypatch.setenv(name, value)
        self.modules = {name: cold_start(f"functions.{name}") for name in ("lambda_api", "lambda_worker",
                                                                           "lambda_poller")}
        self.deployed: list[Deployed] = []

    def deploy(self, **parameters: str) -> Deployed:
        """A stack with these parameters (and an API key); its functions are not started yet."""
        secret = new_secret()
        parameters = {"ApiKeys": entry("iam", "acme", [Scope.ADMIN], secret), **parameters}
        registry = make_registry()
        registry.register(TaskSpec("doomed", _doomed, max_attempts=1))  # dead at its first failure
        registry.register(TaskSpec("limited", _limited, rate=100.0))  # takes a token from a shared bucket
        deployed = Deployed(Stack(template_data(), parameters, name=STACK), FakeClock(), registry, self.modules,
                            secret, self.loop)
        self.deployed.append(deployed)
        return deployed

    def close(self) -> None:
        for deployed in self.deployed:
            deployed.close()
        for module in self.modules.values():
            if hasattr(module.handler, "close"):  # the worker's and the poller's: a loop each
                module.handler.close()
            sys.modules.pop(module.__name__, None)
        self.loop.close()
        asyncio.set_event_loop(None)


def cold_start(module: str) -> Any:
    sys.modules.pop(module, None)
    return importlib.import_module(module)


def template_data() -> dict[str, Any]:
    from cfnlint.decode import cfn_yaml  # type: ignore[import-untyped]

    return cfn_yaml.load(str(TEMPLATE))  # type: ignore[no-any-return]


def _doomed(payload: dict[str, Any]) -> None:
    raise RuntimeError("doomed")


def _limited(payload: dict[str, Any]) -> dict[str, Any]:
    return payload


@pytest.fixture(scope="module")
def cloud() -> Iterator[Cloud]:
    with pytest.MonkeyPatch.context() as monkeypatch, moto.mock_aws():
        fake_aws_credentials(monkeypatch)
        made = Cloud(monkeypatch)
        try:
            yield made
        finally:
            made.close()


# -- Backend=aws: the scenario ------------------------------------------------------------------------------
@dataclass
class Outcome:
    worker: dict[str, Any]
    batch: dict[str, Any]
    dead: list[str]
    replayed: list[str]
    tick: dict[str, Any]


@pytest.fixture(scope="module")
def on_aws(cloud: Cloud) -> tuple[Deployed, Outcome]:
    deployed = cloud.deploy(Backend="aws")
    setup = AwsBackend(parse(deployed.env("ApiFunction")["HEXQ_BACKEND"]), deployed.clock)  # not recorded
    cloud.loop.run_until_complete(setup.create_resources())  # what the template creates
    deployed.start()
    outcome = run_on_aws(deployed, setup, cloud.loop)
    cloud.loop.run_until_complete(setup.close())
    return deployed, outcome


def run_on_aws(d: Deployed, setup: AwsBackend, loop: asyncio.AbstractEventLoop) -> Outcome:
    """What each function does in a stack's life, in an order that gives every code path work to do."""
    d.api("GET", "/readyz")
    for priority in PRIORITIES:
        d.submit(priority=priority)
    keyed = d.submit(idempotency_key="once")
    again = d.api("POST", "/v1/tasks", {"type": "echo", "payload": {}, "idempotency_key": "once"})  # 200: the same
    assert again["id"] == keyed
    bulk = d.api("POST", "/v1/tasks:bulk", {"tasks": [{"type": "echo", "payload": {}},
                                                       {"type": "doomed", "payload": {}},
                                                       {"type": "limited", "payload": {}}]}, expect=202)
    doomed = bulk["tasks"][1]["id"]
    for priority in PRIORITIES:  # due before the worker runs: its claim promotes them first
        d.submit(priority=priority, delay=60)
    d.submit(queue="elsewhere")  # a queue the worker does not serve: its message is handed back
    cancelled = d.submit()
    d.api("POST", f"/v1/tasks/{cancelled}:cancel")
    d.api("GET", "/v1/tasks", query="limit=5")
    d.api("GET", "/v1/tasks", query="status=queued&type=echo")
    d.api("GET", f"/v1/tasks/{keyed}")
    d.api("GET", "/v1/stats")
    d.api("PUT", "/v1/schedules/minutely", {"spec": "@every 1m", "type": "echo", "payload": {}})
    d.api("PUT", "/v1/schedules/gone", {"spec": "@every 1h", "type": "echo", "payload": {}})
    d.api("GET", "/v1/schedules/minutely")
    d.api("GET", "/v1/schedules")
    d.api("DELETE", "/v1/schedules/gone", expect=204)
    d.api("POST", "/v1/queues/held:pause")  # the worker's claims read the paused set, the poller's backlog too
    d.api("POST", "/v1/queues/again:pause")
    d.api("POST", "/v1/queues/again:resume")
    d.api("GET", "/v1/queues")
    d.clock.advance(61)

    worker = d.worker(json.loads((EVENTS / "worker-direct.json").read_text()))
    batch = d.worker(sqs_event(d.submit()))

    dead = [task["id"] for task in d.api("GET", "/v1/dead")["tasks"]]
    replayed = [task["id"] for task in d.api("POST", "/v1/dead:replay", {"ids": [doomed]})["replayed"]]
    lost = d.submit()  # claimed by a worker that dies: its lease runs out
    assert len(loop.run_until_complete(setup.claim_ids([lost], lease_seconds=30, worker_id="gone"))) == 1
    for priority in PRIORITIES:  # due when the poller ticks: it promotes them
        d.submit(priority=priority, delay=120)
    d.clock.advance(8 * DAY)  # past the template's retention (HEXQ_RETENTION's default, 7 days)

    return Outcome(worker, batch, dead, replayed, d.tick())


def test_the_scenario_gives_each_function_its_work(on_aws: tuple[Deployed, Outcome]) -> None:
    deployed, outcome = on_aws

    assert (outcome.worker["succeeded"], outcome.worker["dead"]) == (4 + 1 + 2 + 4, 1)
    assert outcome.batch == {"batchItemFailures": []}
    assert outcome.dead == outcome.replayed and len(outcome.replayed) == 1
    tick = outcome.tick
    assert (tick["promoted"], tick["recovered"], tick["fired"], tick["invoked"]) == (4, 1, 1, 0)
    assert tick["purged"] >= 12
    assert {"sqs.ChangeMessageVisibilityBatch", "dynamodb.TransactWriteItems", "dynamodb.BatchGetItem"} <= (
        deployed.recorder.operations("WorkerFunction") | deployed.recorder.operations("ApiFunction"))


@pytest.mark.parametrize("function", FUNCTIONS)
def test_every_aws_call_of_a_function_is_allowed_by_its_policies(on_aws: tuple[Deployed, Outcome],
                                                                  function: str) -> None:
    deployed, _ = on_aws
    wanted = [n for call in deployed.recorder.calls[function] for n in needs(deployed.stack, call)]

    assert wanted
    assert denied(deployed.stack, function, wanted) == []


@pytest.mark.parametrize("function", FUNCTIONS)
def test_every_permission_a_function_has_is_used(on_aws: tuple[Deployed, Outcome], function: str) -> None:
    deployed, _ = on_aws
    wanted = [n for call in deployed.recorder.calls[function] for n in needs(deployed.stack, call)]
    wanted += event_source_needs(deployed.stack, function)

    assert unused(deployed.stack, function, wanted) == []


# -- Backend=redis: the poller starts workers, nothing else touches AWS ------------------------------------
@pytest.fixture(scope="module")
def on_redis(cloud: Cloud) -> Deployed:
    deployed = cloud.deploy(Backend="redis", RedisUrl="redis://127.0.0.1:6379/0")
    memory = MemoryBackend(deployed.clock)  # stands in for Redis: its calls are not AWS calls
    import boto3  # type: ignore[import-untyped]

    made = boto3.client
    with pytest.MonkeyPatch.context() as monkeypatch:  # the invoker makes its client with boto3.client
        monkeypatch.setattr(boto3, "client", lambda *a, **k: deployed.recorder.attach("PollerFunction", made(*a, **k)))
        deployed.start(memory)
        for _ in range(3):
            deployed.submit()
        report = deployed.tick()
    assert (report["backlog"], report["invoked"]) == (3, 0)  # moto has no such function: the invoke fails
    return deployed


def test_with_redis_only_the_poller_has_a_policy_and_it_is_exactly_what_it_calls(on_redis: Deployed) -> None:
    stack, recorder = on_redis.stack, on_redis.recorder
    wanted = [n for call in recorder.calls["PollerFunction"] for n in needs(stack, call)]

    assert recorder.operations("PollerFunction") == {"lambda.Invoke"}
    assert denied(stack, "PollerFunction", wanted) == []
    assert unused(stack, "PollerFunction", wanted) == []
    assert [statements(stack, name) for name in ("ApiFunction", "WorkerFunction")] == [[], []]
    assert recorder.calls["ApiFunction"] == recorder.calls["WorkerFunction"] == []

"""template.yaml (AWS SAM): cfn-lint finds nothing, and what it names exists — handlers, requirements, wiring."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import packages_distributions
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint_file  # type: ignore[import-untyped]
from cfnlint.decode import cfn_yaml  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
FUNCTIONS = ("ApiFunction", "WorkerFunction", "PollerFunction")
REDIS_URL = "rediss://user:secret@redis.example:6380/0"
API_KEY = "ci:acme:submit+read:sha256=" + "0" * 64


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return cfn_yaml.load(str(TEMPLATE))  # type: ignore[no-any-return]  # keeps !Ref / !Sub / !If as Ref / Fn::*


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


# -- a small evaluator of the template's intrinsic functions ------------------------------------------
# cfn-lint checks that Rules and Conditions are well formed, never what they decide; these tests work
# that out for given parameter values, as CloudFormation would when it creates the stack.
NO_VALUE = object()  # AWS::NoValue: the property (or list element) is left out


@dataclass
class Stack:
    """A stack made from template.yaml with `parameters` (the rest at their defaults): what its intrinsic
    functions evaluate to. Physical names: functions are `<stack>-<logical id>` (SAM adds a suffix)."""

    template: dict[str, Any]
    parameters: dict[str, str] = field(default_factory=dict)
    name: str = "hexq-test"
    region: str = "us-east-1"
    account: str = "123456789012"

    def __post_init__(self) -> None:
        declared = self.template["Parameters"]
        unknown = set(self.parameters) - set(declared)
        assert not unknown, f"not parameters of the template: {unknown}"
        self.parameters = {name: text(self.parameters.get(name, spec.get("Default"))) for name, spec in
                           declared.items()}

    def condition(self, name: str) -> bool:
        return bool(self.value(self.template["Conditions"][name]))

    def failed_rules(self) -> list[str]:
        """The names of the Rules whose assertions fail (CloudFormation would refuse to create the stack)."""
        failed = []
        for name, rule in self.template.get("Rules", {}).items():
            if "RuleCondition" in rule and not self.value(rule["RuleCondition"]):
                continue
            if not all(self.value(assertion["Assert"]) for assertion in rule["Assertions"]):
                failed.append(name)
        return failed

    def value(self, node: Any) -> Any:
        if isinstance(node, list):
            return [v for v in (self.value(item) for item in node) if v is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1 and (next(iter(node)).startswith("Fn::") or next(iter(node)) in ("Ref", "Condition")):
            (function, args), = node.items()
            return self.intrinsic(function, args)
        return {k: v for k, v in ((k, self.value(v)) for k, v in node.items()) if v is not NO_VALUE}

    def intrinsic(self, function: str, args: Any) -> Any:
        def equals(left: Any, right: Any) -> bool:
            return text(self.value(left)) == text(self.value(right))

        def find_in_map(mapping: Any, key: Any, entry: Any) -> Any:
            return self.template["Mappings"][text(self.value(mapping))][text(self.value(key))][text(self.value(entry))]

        def getatt(resource: str, attribute: str) -> str:
            assert attribute == "Arn", f"GetAtt {resource}.{attribute}"
            return self.arn(resource)

        def if_(name: str, yes: Any, no: Any) -> Any:
            return self.value(yes if self.condition(name) else no)

        handlers: dict[str, Callable[..., Any]] = {
            "Ref": self.ref, "Condition": self.condition, "Fn::GetAtt": getatt, "Fn::Sub": self.sub,
            "Fn::If": if_, "Fn::Equals": equals, "Fn::Not": lambda arg: not self.value(arg),
            "Fn::And": lambda *a: all(self.value(arg) for arg in a),
            "Fn::Or": lambda *a: any(self.value(arg) for arg in a), "Fn::FindInMap": find_in_map,
        }
        assert function in handlers, f"the evaluator does not know {function}"
        if function == "Fn::GetAtt" and isinstance(args, str):
            args = args.split(".")
        if function == "Fn::Sub" and isinstance(args, str):
            args = [args]
        return handlers[function](*args) if isinstance(args, list) else handlers[function](args)

    def ref(self, name: str) -> Any:
        pseudo = {"AWS::Region": self.region, "AWS::StackName": self.name, "AWS::AccountId": self.account,
                  "AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com", "AWS::NoValue": NO_VALUE}
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        resource = self.template["Resources"][name]
        match resource["Type"]:
            case "AWS::SQS::Queue":
                return f"https://sqs.{self.region}.amazonaws.com/{self.account}/{self.physical(name)}"
            case _:
                return self.physical(name)

    def physical(self, name: str) -> str:
        """The name a resource gets: its own name property, or `<stack>-<logical id>`."""
        properties = self.template["Resources"][name].get("Properties", {})
        for key in ("QueueName", "TableName", "FunctionName"):
            if key in properties:
                return str(self.value(properties[key]))
        return f"{self.name}-{name}"

    def arn(self, name: str) -> str:
        kind = self.template["Resources"][name]["Type"]
        prefix = {"AWS::SQS::Queue": "sqs", "AWS::DynamoDB::Table": "dynamodb",
                  "AWS::Serverless::Function": "lambda"}[kind]
        where = {"sqs": "", "dynamodb": "table/", "lambda": "function:"}[prefix]
        return f"arn:aws:{prefix}:{self.region}:{self.account}:{where}{self.physical(name)}"

    def sub(self, pattern: str, variables: dict[str, Any] | None = None) -> str:
        variables = variables or {}

        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return text(self.value(variables[name]))
            if name.endswith(".Arn"):
                return self.arn(name.removesuffix(".Arn"))
            return text(self.ref(name))

        return re.sub(r"\$\{([^}!]+)\}", one, pattern)

    def function_env(self, function: str) -> dict[str, str]:
        """The environment variables `function` gets: Globals, then its own."""
        merged = {**self.template["Globals"]["Function"]["Environment"]["Variables"],
                  **self.template["Resources"][function]["Properties"].get("Environment", {}).get("Variables", {})}
        return {name: text(v) for name, v in ((n, self.value(v)) for n, v in merged.items()) if v is not NO_VALUE}


def statements(stack: Stack, function: str) -> list[dict[str, Any]]:
    """`function`'s policy statements as `stack` evaluates them."""
    policies = stack.value(stack.template["Resources"][function]["Properties"].get("Policies", []))
    assert all(isinstance(p, dict) and set(p) == {"Statement"} for p in policies), f"{function}: {policies}"
    return [statement for policy in policies for statement in policy["Statement"]]


def listed(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def text(value: Any) -> str:
    """A value as CloudFormation compares and passes it: a string (YAML's 0, true and 0.5 included)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def test_cfn_lint_finds_no_error_warning_or_informational_issue() -> None:
    matches = lint_file(TEMPLATE, ManualArgs(include_checks=["I"], regions=["us-east-1", "eu-west-1"]))

    assert [f"{m.rule.id} line {m.linenumber}: {m.message}" for m in matches] == []


def test_the_three_handlers_resolve_to_callables(template: dict[str, Any], tmp_path: Path) -> None:
    handlers = [template["Resources"][name]["Properties"]["Handler"] for name in FUNCTIONS]
    code = ("import importlib, sys\n"
            "for spec in sys.argv[1:]:\n"
            "    module, _, attr = spec.rpartition('.')\n"
            "    assert callable(getattr(importlib.import_module(module), attr)), spec\n")
    env = {"PATH": "/usr/bin:/bin", "HEXQ_BACKEND": f"sqlite:///{tmp_path / 'hexq.db'}",
           "HEXQ_WORKER_FUNCTION": "hexq-WorkerFunction"}

    subprocess.run([sys.executable, "-W", "error", "-c", code, *handlers], cwd=ROOT, env=env, check=True,
                   timeout=60)
    assert handlers == ["hexq.functions.lambda_api.handler", "hexq.functions.lambda_worker.handler",
                        "hexq.functions.lambda_poller.handler"]


def test_requirements_txt_covers_what_the_functions_import(template: dict[str, Any], tmp_path: Path) -> None:
    """`sam build` installs requirements.txt beside the code (CodeUri: .); the venv's own packages are not there."""
    assert template["Globals"]["Function"]["CodeUri"] == "."
    code = ("import sys, json, hexq.functions.lambda_api, hexq.functions.lambda_worker, hexq.functions.lambda_poller\n"
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} - set(sys.stdlib_module_names))))")
    env = {"PATH": "/usr/bin:/bin", "HEXQ_BACKEND": f"sqlite:///{tmp_path / 'hexq.db'}",
           "HEXQ_WORKER_FUNCTION": "hexq-WorkerFunction"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True,
                         text=True, timeout=60).stdout
    ours = {"core", "adapters", "functions"}
    by_module = packages_distributions()
    needed = {_normal(dist) for module in json.loads(out) if module not in ours and not module.startswith("_")
              for dist in by_module.get(module, [module])}
    listed = {_normal(re.split(r"[\[<>=!~;\s]", line.strip())[0])
              for line in (ROOT / "requirements.txt").read_text().splitlines() if line.strip()
              and not line.startswith("#")}

    # Required transitively by a listed package (pip installs them): starlette -> anyio, idna, typing_extensions;
    # jinja2 -> markupsafe.
    transitive = {"anyio", "idna", "sniffio", "typing-extensions", "six", "hexq", "setuptools",
                  "markupsafe"}
    assert needed - listed - transitive == set()
    assert {"starlette", "mangum", "croniter", "redis"} <= listed  # redis: Backend=redis imports it lazily


def _normal(name: str) -> str:
    """A distribution name as pip compares them (PEP 503): prometheus_client is prometheus-client."""
    return re.sub(r"[-_.]+", "-", name).lower()


def test_functions_run_python_3_11_like_the_project(template: dict[str, Any]) -> None:
    function = template["Globals"]["Function"]
    assert function["Runtime"] == "python3.11"
    assert function["Architectures"] == ["x86_64"]
    functions = resources(template, "AWS::Serverless::Function").values()
    assert all(r["Properties"].get("Runtime") is None for r in functions)


def test_the_backend_url_is_built_from_the_parameters(template: dict[str, Any]) -> None:
    backend = template["Globals"]["Function"]["Environment"]["Variables"]["HEXQ_BACKEND"]

    assert backend == {"Fn::If": ["IsAws", {"Fn::Sub": "aws://?region=${AWS::Region}&prefix=${AWS::StackName}"},
                                  {"Ref": "RedisUrl"}]}
    assert template["Parameters"]["Backend"]["AllowedValues"] == ["aws", "redis"]
    assert template["Parameters"]["RedisUrl"]["NoEcho"] is True
    assert template["Parameters"]["ApiKeys"]["NoEcho"] is True
    api_env = template["Resources"]["ApiFunction"]["Properties"]["Environment"]["Variables"]
    assert api_env["HEXQ_API_KEYS"] == {"Ref": "ApiKeys"}


def test_the_api_takes_every_path_of_the_http_api(template: dict[str, Any]) -> None:
    events = template["Resources"]["ApiFunction"]["Properties"]["Events"].values()

    assert {(e["Type"], e["Properties"]["Path"], e["Properties"]["Method"]) for e in events} == {
        ("HttpApi", "/", "ANY"), ("HttpApi", "/{proxy+}", "ANY")}
    assert "ServerlessHttpApi" in template["Outputs"]["ApiUrl"]["Value"]["Fn::Sub"]


@pytest.mark.parametrize(("backend", "invokes"), [("redis", "true"), ("aws", "false")])
def test_the_poller_may_invoke_the_worker_exactly_when_it_starts_workers(
        template: dict[str, Any], backend: str, invokes: str) -> None:
    stack = Stack(template, {"Backend": backend, "RedisUrl": REDIS_URL, "ApiKeys": API_KEY})
    env = stack.function_env("PollerFunction")
    invoking = [s for s in statements(stack, "PollerFunction") if "lambda:InvokeFunction" in listed(s["Action"])]

    # With Backend=aws the SQS event sources are the workers' one trigger, and the poller needs no invoke.
    assert env["HEXQ_POLLER_INVOKES"] == invokes
    assert env["HEXQ_WORKER_FUNCTION"] == stack.physical("WorkerFunction")
    start_workers = {"Sid": "StartWorkers", "Effect": "Allow", "Action": "lambda:InvokeFunction",
                     "Resource": stack.arn("WorkerFunction")}
    assert invoking == ([start_workers] if invokes == "true" else [])


def test_the_worker_timeout_leaves_room_for_budget_grace_and_margin(template: dict[str, Any]) -> None:
    from hexq.functions.settings import Settings

    worker = template["Resources"]["WorkerFunction"]["Properties"]
    variables = worker["Environment"]["Variables"]
    settings = Settings(budget=float(variables["HEXQ_BUDGET"]), grace=float(variables["HEXQ_GRACE"]))

    assert settings.budget + settings.grace + 3.0 <= worker["Timeout"]  # 3.0: lambda_worker.SAFETY_MARGIN


def test_aws_backend_resources_exist_only_with_backend_aws(template: dict[str, Any]) -> None:
    kinds = ("AWS::SQS::Queue", "AWS::DynamoDB::Table", "AWS::Lambda::EventSourceMapping")
    aws_only = {name: r for kind in kinds for name, r in resources(template, kind).items()}

    assert len(resources(template, "AWS::SQS::Queue")) == 5  # four priority levels and the dead letters
    assert {r.get("Condition") for r in aws_only.values()} == {"IsAws"}


def test_sqs_feeds_the_worker_with_partial_batch_failures(template: dict[str, Any]) -> None:
    mappings = resources(template, "AWS::Lambda::EventSourceMapping").values()
    queues = resources(template, "AWS::SQS::Queue")
    priority_queues = {name for name, q in queues.items() if "RedrivePolicy" in q["Properties"]}

    assert {m["Properties"]["EventSourceArn"]["Fn::GetAtt"][0] for m in mappings} == priority_queues
    for mapping in mappings:
        assert mapping["Properties"]["FunctionName"] == {"Ref": "WorkerFunction"}
        assert mapping["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    worker_timeout = template["Resources"]["WorkerFunction"]["Properties"]["Timeout"]
    for name in priority_queues:
        props = queues[name]["Properties"]
        assert props["VisibilityTimeout"] >= 6 * worker_timeout
        assert props["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}


def test_the_table_is_on_demand_with_ttl_and_its_status_indexes(template: dict[str, Any]) -> None:
    table = template["Resources"]["TaskTable"]["Properties"]

    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["TimeToLiveSpecification"]["Enabled"] is True
    indexes = {i["IndexName"]: [k["AttributeName"] for k in i["KeySchema"]] for i in table["GlobalSecondaryIndexes"]}
    assert indexes == {"by-status": ["status", "seq"], "by-due": ["status", "due"]}


@pytest.mark.parametrize("backend", ["aws", "redis"])
def test_policies_name_only_this_stacks_resources_and_no_wildcard(template: dict[str, Any], backend: str) -> None:
    """Explicit statements only (no SAM policy template grants more than is written here), each on this
    stack's table, one of its indexes by name, its queues or its worker function."""
    stack = Stack(template, {"Backend": backend, "RedisUrl": REDIS_URL, "ApiKeys": API_KEY})
    ours = {stack.arn(name) for name, r in template["Resources"].items()
            if r["Type"] in ("AWS::SQS::Queue", "AWS::DynamoDB::Table", "AWS::Serverless::Function")}
    indexes = {f"{stack.arn('TaskTable')}/index/{i['IndexName']}"
               for i in template["Resources"]["TaskTable"]["Properties"]["GlobalSecondaryIndexes"]}

    granted = [s for name in FUNCTIONS for s in statements(stack, name)]

    assert granted and {r for s in granted for r in listed(s["Resource"])} <= ours | indexes
    assert all("*" not in action for s in granted for action in listed(s["Action"]))


# -- AllowOpenApi: no API without keys unless the stack says so ---------------------------------------------
@pytest.mark.parametrize(("allow", "keys", "refused"), [
    ("false", "", ["ApiNeedsKeys"]),
    ("false", API_KEY, []),
    ("true", "", []),
    ("true", API_KEY, []),
], ids=["closed-without-keys", "closed-with-keys", "open-without-keys", "open-with-keys"])
def test_a_stack_without_api_keys_is_refused_unless_it_allows_an_open_api(
        template: dict[str, Any], allow: str, keys: str, refused: list[str]) -> None:
    stack = Stack(template, {"Backend": "aws", "AllowOpenApi": allow, "ApiKeys": keys})

    assert stack.failed_rules() == refused
    assert stack.function_env("ApiFunction")["HEXQ_ALLOW_OPEN_API"] == allow  # the function's own check


def test_by_default_the_stack_needs_api_keys(template: dict[str, Any]) -> None:
    parameter = template["Parameters"]["AllowOpenApi"]

    assert (parameter["Default"], parameter["AllowedValues"]) == ("false", ["true", "false"])
    assert Stack(template, {"Backend": "aws"}).failed_rules() == ["ApiNeedsKeys"]
    assert Stack(template, {"Backend": "redis", "RedisUrl": REDIS_URL}).failed_rules() == ["ApiNeedsKeys"]
    assert Stack(template, {"Backend": "redis"}).failed_rules() == ["RedisNeedsAUrl", "ApiNeedsKeys"]


# -- concurrency: the event sources fit the reservation; poller ticks never overlap ------------------------
def test_the_sqs_event_sources_together_fit_the_workers_reserved_concurrency(template: dict[str, Any]) -> None:
    """Every WorkerConcurrency the stack accepts gives four sources whose MaximumConcurrency adds up to at
    most the reservation (Lambda accepts 2 to 1000 each); with no reservation, the least Lambda allows."""
    allowed = [text(v) for v in template["Parameters"]["WorkerConcurrency"]["AllowedValues"]]
    assert set(allowed) == set(template["Mappings"]["SourceConcurrency"])  # each has its entry
    for reserved in allowed:
        stack = Stack(template, {"Backend": "aws", "ApiKeys": API_KEY, "WorkerConcurrency": reserved})
        mappings = resources(template, "AWS::Lambda::EventSourceMapping").values()
        each = [stack.value(m["Properties"])["ScalingConfig"]["MaximumConcurrency"] for m in mappings]
        worker = stack.value(template["Resources"]["WorkerFunction"]["Properties"])

        assert len(each) == 4 and all(2 <= n <= 1000 for n in each), (reserved, each)
        if int(reserved):
            assert int(worker["ReservedConcurrentExecutions"]) == int(reserved)
            assert sum(each) <= int(reserved), (reserved, each)
        else:
            assert "ReservedConcurrentExecutions" not in worker
            assert each == [2, 2, 2, 2]


@pytest.mark.parametrize(("expression", "seconds"), [("rate(1 minute)", 60), ("rate(5 minutes)", 300),
                                                     ("rate(1 hour)", 3600), ("rate(2 days)", 172_800)])
def test_rate_expressions_read_as_seconds(expression: str, seconds: int) -> None:
    assert period(expression) == seconds


def test_a_poller_tick_ends_before_the_next_one_starts(template: dict[str, Any]) -> None:
    poller = template["Resources"]["PollerFunction"]["Properties"]
    (schedule,) = [e["Properties"]["Schedule"] for e in poller["Events"].values() if e["Type"] == "Schedule"]

    assert poller["Timeout"] < period(schedule)
    assert poller["EventInvokeConfig"]["MaximumRetryAttempts"] == 0  # a retried tick would run beside the next
    reserving = Stack(template, {"Backend": "aws", "ApiKeys": API_KEY, "WorkerConcurrency": "10"})
    assert reserving.value(poller)["ReservedConcurrentExecutions"] == 1  # held-back ticks run one after another


def period(schedule: str) -> int:
    """Seconds between two runs of an EventBridge `rate(N unit)` schedule."""
    found = re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)", schedule)
    assert found, f"{schedule!r}: the poller's schedule should be a rate() expression"
    unit = {"minute": 60, "hour": 3600, "day": 86_400}[found.group(2).removesuffix("s")]
    return int(found.group(1)) * unit


@pytest.mark.parametrize("path", sorted((ROOT / "infra" / "events").glob("*.json")), ids=lambda p: p.name)
def test_sample_events_are_json(path: Path) -> None:
    assert isinstance(json.loads(path.read_text()), dict)

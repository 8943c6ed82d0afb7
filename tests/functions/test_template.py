"""template.yaml (AWS SAM): cfn-lint finds nothing, and what it names exists — handlers, requirements, wiring."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib.metadata import packages_distributions
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint_file  # type: ignore[import-untyped]
from cfnlint.decode import cfn_yaml  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
FUNCTIONS = ("ApiFunction", "WorkerFunction", "PollerFunction")


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return cfn_yaml.load(str(TEMPLATE))  # type: ignore[no-any-return]  # keeps !Ref / !Sub / !If as Ref / Fn::*


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


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
    assert handlers == ["functions.lambda_api.handler", "functions.lambda_worker.handler",
                        "functions.lambda_poller.handler"]


def test_requirements_txt_covers_what_the_functions_import(template: dict[str, Any], tmp_path: Path) -> None:
    """`sam build` installs requirements.txt beside the code (CodeUri: .); the venv's own packages are not there."""
    assert template["Globals"]["Function"]["CodeUri"] == "."
    code = ("import sys, json, functions.lambda_api, functions.lambda_worker, functions.lambda_poller\n"
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} - set(sys.stdlib_module_names))))")
    env = {"PATH": "/usr/bin:/bin", "HEXQ_BACKEND": f"sqlite:///{tmp_path / 'hexq.db'}",
           "HEXQ_WORKER_FUNCTION": "hexq-WorkerFunction"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True,
                         text=True, timeout=60).stdout
    ours = {"core", "adapters", "functions"}
    by_module = packages_distributions()
    needed = {dist.lower() for module in json.loads(out) if module not in ours and not module.startswith("_")
              for dist in by_module.get(module, [module])}
    listed = {re.split(r"[\[<>=!~;\s]", line.strip())[0].lower()
              for line in (ROOT / "requirements.txt").read_text().splitlines() if line.strip()
              and not line.startswith("#")}

    # Required transitively by a listed package (pip installs them): starlette -> anyio, idna, typing_extensions.
    transitive = {"anyio", "idna", "sniffio", "typing_extensions", "typing-extensions", "six", "hexq", "setuptools"}
    assert needed - listed - transitive == set()
    assert {"starlette", "mangum", "croniter", "redis"} <= listed  # redis: Backend=redis imports it lazily


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


def test_the_poller_ticks_every_minute_and_may_invoke_only_the_worker(template: dict[str, Any]) -> None:
    poller = template["Resources"]["PollerFunction"]["Properties"]
    statements = [s for p in poller["Policies"] if isinstance(p, dict) and "Statement" in p for s in p["Statement"]]

    assert [e["Properties"]["Schedule"] for e in poller["Events"].values()] == ["rate(1 minute)"]
    assert poller["Environment"]["Variables"]["HEXQ_WORKER_FUNCTION"] == {"Ref": "WorkerFunction"}
    # With Backend=aws the SQS event sources are the workers' one trigger.
    assert poller["Environment"]["Variables"]["HEXQ_POLLER_INVOKES"] == {"Fn::If": ["IsAws", "false", "true"]}
    assert statements == [{"Sid": "StartWorkers", "Effect": "Allow", "Action": "lambda:InvokeFunction",
                           "Resource": {"Fn::GetAtt": ["WorkerFunction", "Arn"]}}]


def test_the_worker_timeout_leaves_room_for_budget_grace_and_margin(template: dict[str, Any]) -> None:
    from functions.settings import Settings

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


def test_aws_policies_are_scoped_to_the_stack_resources(template: dict[str, Any]) -> None:
    """Every policy of the aws backend names this stack's table or queues; nothing is granted on '*'."""
    for name in FUNCTIONS:
        for policy in template["Resources"][name]["Properties"]["Policies"]:
            assert "*" not in json.dumps(policy), f"{name}: {policy}"
            if "Fn::If" in policy:
                condition, granted, otherwise = policy["Fn::If"]
                assert (condition, otherwise) == ("IsAws", {"Ref": "AWS::NoValue"})
                text = json.dumps(granted)
                assert "TaskTable" in text or all(q in text for q in ("LowQueue", "NormalQueue", "HighQueue",
                                                                      "CriticalQueue"))


@pytest.mark.parametrize("path", sorted((ROOT / "infra" / "events").glob("*.json")), ids=lambda p: p.name)
def test_sample_events_are_json(path: Path) -> None:
    assert isinstance(json.loads(path.read_text()), dict)

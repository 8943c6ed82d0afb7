"""template.yaml's functions under a real `sam local invoke`, against a real Redis on 127.0.0.1.

`sam build` once for the module (in a copy of the repository, so .aws-sam never lands in the
checkout), then: ApiFunction with the HTTP API v2 submit event -> 202 and a task id; WorkerFunction
with the poller's direct event -> a report that ran it; ApiFunction with the status event -> 200,
"succeeded". The stack has no API keys, so every invoke passes AllowOpenApi=true (without it the API
function answers 503 to every request). Every function container uses host networking (the shim of
infra/ci/sam-local.sh), so the Redis of the `redis_url` fixture is reachable at 127.0.0.1.

Needs what infra/ci/sam-local.sh sets up: HEXQ_SAM (the sam binary) and HEXQ_SAM_DOCKER_HOST (the
shim's socket, in front of the engine of infra/ci/redis-image.sh). Without them the test skips, except
in CI (CI=true), where it fails. `sam local invoke` exits 0 even when it cannot reach the function's
container, so the test checks what the functions returned, never the exit status alone.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis_server

REPO = Path(__file__).resolve().parents[2]
SKIP_REASON = "sam local needs the Docker engine and SAM CLI that infra/ci/sam-local.sh sets up; CI runs it"
BUILD_TIMEOUT = 600.0  # sam build installs requirements.txt from PyPI
INVOKE_TIMEOUT = 240.0  # a cold container start plus the function; the worker gives up claiming after 1 s idle
# What `sam build` never needs from the checkout (it would leave the same out, or it is local state).
NOT_COPIED = shutil.ignore_patterns(".git", ".venv", ".aws-sam", "__pycache__", ".pytest_cache", ".mypy_cache",
                                    ".ruff_cache", ".hypothesis", "*.egg-info", "*.db", "*.db-wal", "*.db-shm")


@dataclass
class Sam:
    """The sam binary, its environment (DOCKER_HOST = the shim), and a built copy of the project."""

    binary: str
    env: dict[str, str]
    project: Path
    timings: dict[str, float] = field(default_factory=dict)

    def run(self, what: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        started = time.monotonic()
        try:
            result = subprocess.run([self.binary, *args], cwd=self.project, env=self.env, capture_output=True,
                                    text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            pytest.fail(f"{what}: no answer within {timeout:g}s\nstdout:\n{_text(exc.stdout)[-3000:]}\n"
                        f"stderr:\n{_text(exc.stderr)[-3000:]}")
        self.timings[what] = time.monotonic() - started
        return result

    def invoke(self, what: str, function: str, event: Path, redis_url: str) -> dict[str, Any]:
        """`sam local invoke` one function; returns what the function returned (its JSON on stdout)."""
        result = self.run(what, "local", "invoke", function, "--event", str(event),
                          "--template", str(self.project / ".aws-sam" / "build" / "template.yaml"),
                          "--parameter-overrides", f"ParameterKey=Backend,ParameterValue=redis "
                          f"ParameterKey=RedisUrl,ParameterValue={redis_url} "
                          "ParameterKey=AllowOpenApi,ParameterValue=true",  # no keys: the API runs open
                          "--skip-pull-image", timeout=INVOKE_TIMEOUT)
        output = _returned(result.stdout)
        assert output is not None, (f"{what}: {function} returned nothing (exit {result.returncode})\n"
                                    f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-6000:]}")
        return output


def _text(data: str | bytes | None) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else data or ""


def _returned(stdout: str) -> dict[str, Any] | None:
    """The function's return value: the last line of sam's stdout that is a JSON object."""
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return None


def _require_sam() -> tuple[str, str]:
    binary, docker_host = os.environ.get("HEXQ_SAM", ""), os.environ.get("HEXQ_SAM_DOCKER_HOST", "")
    missing = [name for name, value in (("HEXQ_SAM", binary), ("HEXQ_SAM_DOCKER_HOST", docker_host)) if not value]
    if missing:
        reason = f"{SKIP_REASON} ({' and '.join(missing)} not set)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"sam local is required in CI: {reason}")
        pytest.skip(reason)
    if not os.access(binary, os.X_OK):
        pytest.fail(f"HEXQ_SAM={binary} is not an executable")
    return binary, docker_host


@pytest.fixture(scope="module")
def sam(tmp_path_factory: pytest.TempPathFactory) -> Sam:
    """`sam build` once, in a copy of the repository."""
    binary, docker_host = _require_sam()
    project = tmp_path_factory.mktemp("sam") / "hexq"
    shutil.copytree(REPO, project, ignore=NOT_COPIED, symlinks=True)
    env = {**os.environ, "DOCKER_HOST": docker_host, "SAM_CLI_TELEMETRY": "0", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_REGION": "us-east-1"}
    built = Sam(binary, env, project)
    result = built.run("sam build", "build", "--template-file", "template.yaml", timeout=BUILD_TIMEOUT)
    template = project / ".aws-sam" / "build" / "template.yaml"
    assert result.returncode == 0 and template.exists(), (
        f"sam build failed (exit {result.returncode})\nstdout:\n{result.stdout[-3000:]}\n"
        f"stderr:\n{result.stderr[-6000:]}")
    return built


def _json_body(response: dict[str, Any]) -> dict[str, Any]:
    body = json.loads(response.get("body") or "null")
    assert isinstance(body, dict), response
    return body


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.timeout(BUILD_TIMEOUT + 3 * INVOKE_TIMEOUT + 60)
def test_submit_run_and_read_a_task_through_sam_local_invoke(
        sam: Sam, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]) -> None:
    # Asked for only now, so that a machine without sam skips with the reason above, not Redis's.
    redis_url: str = request.getfixturevalue("redis_url")
    client = redis_server.sync_client(redis_url)
    redis_server.flush(client)
    events = sam.project / "infra" / "events"
    try:
        submitted = sam.invoke("invoke ApiFunction (submit)", "ApiFunction", events / "api-v2-submit.json",
                               redis_url)
        assert submitted.get("statusCode") == 202, submitted
        task = _json_body(submitted)
        task_id = task.get("id")
        assert isinstance(task_id, str) and task_id, task
        assert task.get("type") == "echo", task

        report = sam.invoke("invoke WorkerFunction", "WorkerFunction", events / "worker-direct.json", redis_url)
        assert report.get("succeeded", 0) >= 1, report

        status_event = sam.project / "status-event.json"
        status_event.write_text((events / "api-v2-status.json").read_text().replace("__TASK_ID__", task_id))
        status = sam.invoke("invoke ApiFunction (status)", "ApiFunction", status_event, redis_url)
        assert status.get("statusCode") == 200, status
        read = _json_body(status)
        assert read.get("id") == task_id and read.get("status") == "succeeded", read
        assert read.get("result") == {"hello": "lambda"}, read
    finally:
        redis_server.flush(client)
        client.close()
        with capsys.disabled():
            print("\nsam local timings: " + ", ".join(f"{what} {seconds:.1f}s"
                                                      for what, seconds in sam.timings.items()))
        for what, seconds in sam.timings.items():
            request.node.user_properties.append((what, round(seconds, 1)))

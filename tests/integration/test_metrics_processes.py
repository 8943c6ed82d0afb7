"""Metrics from real processes: `hexq serve`'s /metrics adds up what its pool's worker processes counted
(prometheus_client's multiprocess mode), and `hexq worker` / `hexq poller` serve their own on --metrics-port."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from processes import wait_healthy

if TYPE_CHECKING:
    from tests.integration.conftest import Proc, Served

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus text scrape (0 when absent)."""
    for line in text.splitlines():
        match = re.fullmatch(rf"{re.escape(name)}(?:\{{(.*)\}})? (\S+)", line)
        if match and dict(re.findall(r'(\w+)="([^"]*)"', match[1] or "")) == labels:
            return float(match[2])
    return 0.0


def scrape_until(url: str, done: Callable[[str], bool], timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        try:
            text = httpx.get(f"{url}/metrics", timeout=5.0).text
        except httpx.TransportError:  # not listening yet: the process is still importing
            text = ""
        if text and done(text):
            return text
        time.sleep(0.3)
    pytest.fail(f"/metrics never showed it within {timeout}s:\n{text[-3000:]}")


def test_serve_metrics_add_up_the_worker_processes(serve: Callable[..., Served]) -> None:
    served = serve("--workers", "2")
    with httpx.Client(base_url=served.url, timeout=10.0) as client:
        for i in range(20):
            assert client.post("/v1/tasks", json={"type": "echo", "payload": {"i": i}}).status_code == 202
        assert client.post("/v1/tasks", json={"type": "no_such_type", "payload": {}}).status_code == 422
    labels = {"type": "echo", "queue": "default", "priority": "normal"}
    text = scrape_until(served.url, lambda t: sample(t, "hexq_tasks_processed_total", **labels,
                                                     status="succeeded") == 20)

    assert sample(text, "hexq_tasks_submitted_total", **labels) == 20  # counted by the API process
    assert sample(text, "hexq_submit_rejections_total", reason="unknown_type") == 1
    assert sample(text, "hexq_task_duration_seconds_count", type="echo", queue="default", status="succeeded") == 20
    assert sample(text, "hexq_task_queue_wait_seconds_count", **labels) == 20
    assert sample(text, "hexq_backend_op_duration_seconds_count", op="claim") > 0  # the workers' backend
    assert sample(text, "hexq_backend_up") == 1
    assert sample(text, "hexq_http_requests_total", method="POST", route="/v1/tasks", status="202") == 20
    assert text.count("# TYPE hexq_tasks_processed_total counter") == 1  # merged, not one family per process
    promtool = shutil.which("promtool")
    if promtool is None and os.environ.get("CI") == "true":
        pytest.fail("promtool is required in CI")
    if promtool is not None:
        checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True,
                                 timeout=60, check=False)
        assert checked.returncode == 0 and not checked.stdout.strip(), checked.stdout + checked.stderr

    directories = [line for line in served.proc.log().splitlines() if "hexq-metrics-" in line]
    assert served.proc.terminate(20) == 0, served.proc.log()[-3000:]
    assert directories == []  # nothing logged about the directory; and it is gone:
    assert not list(Path(os.environ.get("TMPDIR", "/tmp")).glob(f"hexq-metrics-*/*_{served.proc.process.pid}.db"))


def test_worker_and_poller_serve_their_own_metrics(hexq: Callable[..., Proc], tmp_path: Path) -> None:
    backend = f"sqlite:///{tmp_path}/hexq.db"
    submit = hexq("submit", "echo", '{"x": 1}', "--backend", backend)
    assert submit.process.wait(30) == 0
    worker_port, poller_port = free_port(), free_port()
    worker = hexq("worker", "--backend", backend, "--metrics-port", str(worker_port))
    poller = hexq("poller", "--backend", backend, "--metrics-port", str(poller_port))
    try:
        text = scrape_until(f"http://127.0.0.1:{worker_port}", lambda t: sample(
            t, "hexq_tasks_processed_total", type="echo", queue="default", priority="normal", status="succeeded") == 1)
        assert 'hexq_build_info{version="' in text
        assert "hexq_queue_depth" not in text  # the state is the API's to serve, once for the cluster
        polled = scrape_until(f"http://127.0.0.1:{poller_port}",
                              lambda t: sample(t, "hexq_backend_op_duration_seconds_count", op="promote_due") > 0)
        assert "hexq_backend_op_duration_seconds_bucket" in polled
    finally:
        assert worker.terminate(15) == 0 and poller.terminate(15) == 0


def test_hexq_api_serves_the_api_alone(hexq: Callable[..., Proc], tmp_path: Path) -> None:
    port = free_port()
    api = hexq("api", "--backend", f"sqlite:///{tmp_path}/hexq.db", "--port", str(port))
    url = f"http://127.0.0.1:{port}"
    wait_healthy(api.process, url, api.log)
    assert httpx.post(f"{url}/v1/tasks", json={"type": "echo", "payload": {}}).status_code == 202
    text = httpx.get(f"{url}/metrics").text
    assert sample(text, "hexq_tasks_submitted_total", type="echo", queue="default", priority="normal") == 1
    assert sample(text, "hexq_queue_depth", queue="default", priority="normal", state="queued") in (0, 1)
    assert api.terminate(15) == 0
    assert api.output().startswith("hexq api on ")
    refused = hexq("api", "--backend", f"sqlite:///{tmp_path}/hexq.db", "--host", "0.0.0.0", "--port", str(port))
    assert refused.process.wait(30) == 2 and "refusing to bind" in refused.log()

"""A real Prometheus server for tests: Debian's /usr/bin/prometheus (apt-get install prometheus, which
also brings promtool) started on a free 127.0.0.1 port with a generated config and a TSDB in a temp
directory, plus a small client for its HTTP API.

    with prometheus_server.running(tmp_path, {"hexq-api": "127.0.0.1:8000"}, rule_files=[...]) as prom:
        prom.wait_for("up{job='hexq-api'} == 1", timeout=20)
        prom.query("sum(hexq_queue_depth)")          # the parsed JSON answer, errors included

Everything listens on and talks to loopback only. Without the binary, tests skip locally and fail when
CI=true (like tests/redis_server.py), so a missing server never passes silently in CI.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest
import yaml
from processes import stop, wait_healthy


def unavailable(reason: str) -> NoReturn:
    """Skip on a developer machine; fail in CI, where a missing Prometheus must not pass silently."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"Prometheus is required in CI: {reason}")
    pytest.skip(reason)


def binary(name: str = "prometheus") -> str:
    """The path of `prometheus` or `promtool` (Debian's prometheus package has both)."""
    path = shutil.which(name) or (f"/usr/bin/{name}" if os.access(f"/usr/bin/{name}", os.X_OK) else None)
    if path is None:
        unavailable(f"{name} is not installed (apt-get install prometheus)")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def config(targets: Mapping[str, str], rule_files: Sequence[Path] = (), interval: str = "1s") -> dict[str, Any]:
    """A prometheus.yml: one job per `targets` entry (job name -> host:port, metrics at /metrics), scraped
    and evaluated every `interval`."""
    for target in targets.values():
        host = target.rsplit(":", 1)[0]
        if host not in ("127.0.0.1", "localhost", "[::1]"):
            raise ValueError(f"a test scrapes loopback only, not {target}")
    return {
        "global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [{"job_name": job, "metrics_path": "/metrics", "static_configs": [{"targets": [target]}]}
                           for job, target in targets.items()],
    }


class PrometheusError(AssertionError):
    pass


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    http: httpx.Client

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def api(self, path: str, **params: Any) -> dict[str, Any]:
        """GET /api/v1/<path>; the JSON answer whatever the status (a bad query is a 400 with
        {"status": "error", "errorType": ..., "error": ...})."""
        if self.process.poll() is not None:
            raise PrometheusError(f"prometheus exited with {self.process.returncode}:\n{self.log()[-3000:]}")
        response = self.http.get(f"/api/v1/{path}", params=params)
        try:
            answer: dict[str, Any] = response.json()
        except ValueError:
            raise PrometheusError(f"/api/v1/{path} answered {response.status_code}: {response.text[:500]}") from None
        return answer

    def query(self, expr: str, at: float | None = None) -> dict[str, Any]:
        """An instant query."""
        return self.api("query", query=expr, **({} if at is None else {"time": f"{at:.3f}"}))

    def query_range(self, expr: str, start: float, end: float, step: float = 1.0) -> dict[str, Any]:
        return self.api("query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}", step=f"{step:g}")

    def series_count(self, expr: str) -> int:
        """How many series an instant query returns (raising if it does not parse)."""
        answer = self.query(expr)
        if answer.get("status") != "success":
            raise PrometheusError(f"{expr}: {answer.get('errorType')}: {answer.get('error')}")
        return len(answer["data"]["result"])

    def wait_until(self, expr: str, timeout: float) -> bool:
        """Whether the instant query `expr` returned a series within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not self.series_count(expr):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.25)
        return True

    def wait_for(self, expr: str, timeout: float, what: str = "") -> None:
        """Until the instant query `expr` returns at least one series (fails the test after `timeout`)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.series_count(expr):
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                targets = self.api("targets").get("data", {}).get("activeTargets", [])
                health = [(t["labels"].get("job"), t["health"], t.get("lastError")) for t in targets]
                pytest.fail(f"timed out after {timeout}s waiting for {what or expr}; targets {health}")
            time.sleep(0.25)


@contextmanager
def running(tmp: Path, targets: Mapping[str, str], rule_files: Sequence[Path] = (), interval: str = "1s",
            timeout: float = 20.0) -> Iterator[Prometheus]:
    """A Prometheus scraping `targets` (job -> host:port) every `interval`; stopped (SIGTERM, then SIGKILL)
    on exit. Returns once /-/ready answers 200."""
    executable = binary("prometheus")
    tmp.mkdir(parents=True, exist_ok=True)
    config_path = tmp / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config(targets, rule_files, interval)))
    port = free_port()
    log_path = tmp / "prometheus.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [executable, f"--config.file={config_path}", f"--storage.tsdb.path={tmp / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
    url = f"http://127.0.0.1:{port}"
    http = httpx.Client(base_url=url, trust_env=False, timeout=10.0)
    prom = Prometheus(url, process, log_path, http)
    try:
        wait_healthy(process, url, prom.log, timeout, path="/-/ready", what="prometheus")
        yield prom
    finally:
        http.close()
        if process.poll() is None:
            stop(process, 10)

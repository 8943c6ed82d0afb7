"""Helpers for tests that run hexq as a child process: wait until it serves, stop it politely.

tests/ is on sys.path (tests/conftest.py), so any test module or helper imports this as `processes`.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable

import httpx
import pytest


def wait_healthy(process: subprocess.Popen[bytes], url: str, log: Callable[[], str], timeout: float = 30.0, *,
                 path: str = "/healthz", what: str = "hexq") -> None:
    """Return once `url` + `path` answers 200; fail the test (with the end of `log()`) if the process (`what`)
    exits first or nothing answers within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=url, trust_env=False, timeout=2.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"{what} exited with {process.returncode}:\n{log()[-4000:]}")
            try:
                if client.get(path).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    pytest.fail(f"{url}{path} did not answer within {timeout}s:\n{log()[-4000:]}")


def stop(process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM (a graceful shutdown), then SIGKILL if it has not exited within `timeout` seconds."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()

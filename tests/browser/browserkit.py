"""A real `hexq serve` (SQLite, loopback, a free port) and Debian's chromium driven by Playwright.

Helpers for test_dashboard.py, which holds the fixtures. Not a conftest.py: tests import helpers from their
directory's `conftest`, a name every test directory shares, so one more would shadow another's when several
directories are collected together.

Chromium comes from the system (/usr/bin/chromium, `.ci/run` installs it); `playwright install` is never
run. Without it the tests skip on a developer machine and fail in CI, as the Redis tests do.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page

CHROMIUM = Path("/usr/bin/chromium")
HERE = Path(__file__).parent
SHOTS = HERE / "screenshots"
# What the probe on this closed network needed: no sandbox (containers), no GPU, nothing fetched at start.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


def require_chromium() -> None:
    if CHROMIUM.exists() and shutil.which("chromium"):
        return
    if os.environ.get("CI") == "true":
        pytest.fail("chromium is required in CI (.ci/run installs Debian's package)")
    pytest.skip("no /usr/bin/chromium: apt-get install chromium to run the browser tests")


@dataclass
class Watched:
    """A page whose console errors, uncaught errors and dialogs are recorded (any of them fails the test,
    unless the test expects some)."""

    page: Page
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)


@dataclass
class Server:
    url: str
    db: Path
    tmp: Path

    def client(self, key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, trust_env=False, timeout=10.0)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def shoot(page: Page, name: str) -> Path:
    SHOTS.mkdir(exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path

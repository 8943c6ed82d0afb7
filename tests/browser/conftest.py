"""A real `hexq serve` (SQLite, loopback, a free port) and Debian's chromium driven by Playwright.

Chromium comes from the system (/usr/bin/chromium, `.ci/run` installs it); `playwright install` is never
run. Without it the tests skip on a developer machine and fail in CI, as the Redis tests do.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Dialog, Page, sync_playwright
from processes import stop, wait_healthy

CHROMIUM = Path("/usr/bin/chromium")
HERE = Path(__file__).parent
SHOTS = HERE / "screenshots"
# What the probe on this closed network needed: no sandbox (containers), no GPU, nothing fetched at start.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


def _require_chromium() -> None:
    if CHROMIUM.exists() and shutil.which("chromium"):
        return
    if os.environ.get("CI") == "true":
        pytest.fail("chromium is required in CI (.ci/run installs Debian's package)")
    pytest.skip("no /usr/bin/chromium: apt-get install chromium to run the browser tests")


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    _require_chromium()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield launched
        launched.close()


@dataclass
class Watched:
    """A page whose console errors, uncaught errors and dialogs are recorded (any of them fails the test,
    unless the test expects some)."""

    page: Page
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)


@pytest.fixture
def watched(browser: Browser) -> Iterator[Callable[..., Watched]]:
    contexts = []

    def open_page(*, width: int = 1280) -> Watched:
        context = browser.new_context(viewport={"width": width, "height": 800})
        contexts.append(context)
        page = context.new_page()
        seen = Watched(page)
        page.on("console", lambda m: seen.errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: seen.errors.append(f"pageerror: {e}"))

        def dialog(d: Dialog) -> None:
            seen.dialogs.append(d.message)
            d.dismiss()

        page.on("dialog", dialog)
        return seen

    yield open_page
    for context in contexts:
        context.close()


@dataclass
class Server:
    url: str
    db: Path
    tmp: Path

    def client(self, key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, trust_env=False, timeout=10.0)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """server(**env) -> a running `hexq serve` on SQLite, stopped at teardown."""
    started: list[subprocess.Popen[bytes]] = []

    def start(**env: str) -> Server:
        port = _free_port()
        db = tmp_path / "hexq.db"
        log = tmp_path / f"serve-{len(started)}.log"
        environ = {**os.environ, "HEXQ_POLL_INTERVAL": "0.2", "HEXQ_IDLE_WAIT": "0.5",
                   "HEXQ_TASKS": "hexq.functions.examples,browser_tasks",
                   "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])), **env}
        with log.open("wb") as sink:
            process = subprocess.Popen([sys.executable, "-m", "hexq.functions.cli", "serve", "--port", str(port),
                                        "--backend", f"sqlite:///{db}"], cwd=tmp_path, env=environ, stdout=sink,
                                       stderr=subprocess.STDOUT)
        started.append(process)
        url = f"http://127.0.0.1:{port}"
        wait_healthy(process, url, lambda: log.read_text(errors="replace"))
        return Server(url, db, tmp_path)

    yield start
    for process in started:
        stop(process)


def shoot(page: Page, name: str) -> Path:
    SHOTS.mkdir(exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path

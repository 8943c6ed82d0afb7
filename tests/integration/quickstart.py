"""The README's Python quick start, as a test runs it: its files written out, its commands run verbatim.

The text comes from the README's "## Python quick start" section; until the README has one, from
tests/integration/quickstart.md, the section as proposed. Python blocks whose first line is
`# <name>.py` are files; bash blocks are commands: the one that runs `hexq serve` starts the server
(in the background, on the port in HEXQ_PORT), the others run in turn once it answers.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from processes import wait_healthy

ROOT = Path(__file__).resolve().parents[2]
HEADING = "## Python quick start"
PROPOSED = Path(__file__).with_name("quickstart.md")
DEFAULT_URL = '"sqlite:///hexq.db"'  # the one string the flavours change in submit.py
_BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def readme_section() -> str | None:
    """The README's quick start section (heading to the next `## `), or None while it has none."""
    text = (ROOT / "README.md").read_text()
    start = text.find(HEADING + "\n")
    if start < 0:
        return None
    end = text.find("\n## ", start + len(HEADING))
    return text[start:] if end < 0 else text[start:end + 1]


@dataclass
class QuickStart:
    files: dict[str, str] = field(default_factory=dict)
    server: str = ""  # the command that starts hexq serve
    commands: list[str] = field(default_factory=list)  # the rest, in order

    @classmethod
    def parse(cls, section: str) -> QuickStart:
        quick = cls()
        for language, body in _BLOCK.findall(section):
            first = body.splitlines()[0] if body.strip() else ""
            if language == "python" and re.fullmatch(r"# [\w.]+\.py", first):
                quick.files[first[2:]] = body
            elif language == "bash":
                for line in (line.strip() for line in body.splitlines()):
                    if line and not line.startswith("#"):
                        if "hexq serve" in line:
                            quick.server = line
                        else:
                            quick.commands.append(line)
        return quick

    @classmethod
    def current(cls) -> QuickStart:
        return cls.parse(readme_section() or PROPOSED.read_text())

    @property
    def expected(self) -> list[str]:
        """What submit.py prints, as the comments on its print lines say."""
        return re.findall(r"^\s*print\(.*\)\s+# (.*)$", self.files["submit.py"], re.MULTILINE)

    def with_url(self, url: str | None) -> QuickStart:
        """The same quick start with submit.py's backend URL replaced (None: as written)."""
        if url is None:
            return self
        assert self.files["submit.py"].count(DEFAULT_URL) == 1, "submit.py names its URL once"
        return QuickStart({**self.files, "submit.py": self.files["submit.py"].replace(DEFAULT_URL, f'"{url}"')},
                          self.server, self.commands)


def flavour(name: str, port: int, request: pytest.FixtureRequest) -> tuple[str | None, dict[str, str]]:
    """submit.py's URL for a flavour (None: as written) and the server's extra environment. Redis: the
    session's server (skipped locally without one, a failure in CI), emptied first."""
    if name == "http":
        return f"http://127.0.0.1:{port}", {}
    if name == "redis":
        import redis_server

        url: str = request.getfixturevalue("redis_url")
        redis_server.flush(client := redis_server.sync_client(url))
        client.close()
        return url, {"HEXQ_BACKEND": url}
    return None, {}


def clean_env(bin_dir: Path, **extra: str) -> dict[str, str]:
    """This process's environment without hexq's settings or a Python path, `bin_dir` first on PATH (as in an
    activated virtual environment), and `extra`."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("HEXQ_") and k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return {**env, **extra}


def run(quick: QuickStart, folder: Path, env: Mapping[str, str], port: int, timeout: float = 120) -> str:
    """Write the files into `folder`, start the server, run the other commands; return their output."""
    for name, text in quick.files.items():
        (folder / name).write_text(text)
    log = folder / "serve.log"
    with log.open("wb") as out:
        server = subprocess.Popen(["bash", "-c", quick.server], cwd=folder, env={**env, "HEXQ_PORT": str(port)},
                                  stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_serving(server, f"http://127.0.0.1:{port}", log, own=[Path(name).stem for name in quick.files])
        outputs = [subprocess.run(["bash", "-c", command], cwd=folder, env=dict(env), capture_output=True, text=True,
                                  timeout=timeout) for command in quick.commands]
    finally:
        _stop(server)
    for done in outputs:
        assert done.returncode == 0, f"{done.args[-1]} exited {done.returncode}:\n{done.stderr[-4000:]}"
    return "".join(done.stdout for done in outputs)


def _wait_serving(server: subprocess.Popen[bytes], url: str, log: Path, own: list[str]) -> None:
    def text() -> str:
        return log.read_text(errors="replace")

    try:
        wait_healthy(server, url, text)
    except pytest.fail.Exception:
        if any(f"No module named '{module}'" in text() for module in own):
            pytest.xfail("`hexq serve` cannot import a task module from the folder it runs in: HEXQ_TASKS modules "
                         "must be looked up in the working directory first, as `python -m` does (issue #10)")
        raise


def _stop(server: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's whole process group (bash, hexq serve and its workers), then SIGKILL to whatever
    is left of it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(20)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait(10)

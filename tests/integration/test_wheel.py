"""The wheel, installed as a user installs it: built with `pip wheel`, into a fresh venv (its dependencies
from the package index), beside an application that has its own `core` and `functions` packages.

site-packages must hold one import package, hexq, so the application's packages are its own; `hexq serve`
run from the application's folder serves its task modules; the README's quick start runs verbatim.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import quickstart
from conftest import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

_NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "*.egg-info", "build", "dist", "__pycache__", "*.pyc", ".*cache",
                                     ".hypothesis", ".aws-sam", "artifacts", "*.db", "*.db-*", "tests", "infra")
APP = {  # an application whose package names are hexq's folder names
    "core/__init__.py": 'ORIGIN = "the application\'s core"\n',
    "functions/__init__.py": 'def helper() -> str:\n    return "the application\'s functions"\n',
    "app_tasks.py": ("from core import ORIGIN\nfrom functions import helper\n\nfrom hexq import task\n\n\n"
                     "@task(\"app.where\")\ndef where(payload: dict) -> dict:\n"
                     "    return {\"core\": ORIGIN, \"functions\": helper(), \"n\": payload[\"n\"]}\n"),
    "app_submit.py": ("import sys\n\nfrom hexq import Client\n\nwith Client.from_url(sys.argv[1]) as client:\n"
                      "    print(client.submit(\"app.where\", {\"n\": 7}).result(timeout=60))\n"),
}


@dataclass(frozen=True)
class Installed:
    wheel: Path
    bin: Path
    site_packages: Path


def _run(*argv: str | Path, cwd: Path | None = None, timeout: float = 600) -> str:
    """Run a command with this process's environment less PYTHONPATH and HEXQ_* (nothing of this checkout)."""
    env = quickstart.clean_env(Path(argv[0]).parent)
    done = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{argv} exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """Build from a copy of the source (a build writes build/ and *.egg-info beside it), install in a new venv."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    shutil.copytree(quickstart.ROOT, source, symlinks=True, ignore=_NOT_SOURCE)
    _run(sys.executable, "-m", "pip", "wheel", source, "--no-deps", "--wheel-dir", work / "dist", "--quiet")
    [wheel] = (work / "dist").glob("hexq-*.whl")
    _run(sys.executable, "-m", "venv", work / "venv")
    python = work / "venv" / "bin" / "python"
    _run(python, "-m", "pip", "install", "--quiet", wheel)
    purelib = _run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip()
    return Installed(wheel, python.parent, Path(purelib))


@pytest.fixture
def app(tmp_path: Path) -> Path:
    for name, text in APP.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def test_site_packages_holds_one_import_package_hexq(installed: Installed) -> None:
    top = {path.name for path in installed.site_packages.iterdir()}
    names = zipfile.ZipFile(installed.wheel).namelist()

    assert "hexq" in top and not top & {"core", "adapters", "functions"}
    assert {name.split("/")[0] for name in names} == {"hexq", installed.wheel.name.split("-py3")[0] + ".dist-info"}
    # What is not Python comes along: the Redis scripts and the type marker.
    assert {"hexq/adapters/redis/scripts/claim.lua", "hexq/py.typed", "hexq/functions/client/aio.py"} <= set(names)
    # ... and the dashboard's templates and static files.
    assert {"hexq/functions/ui/templates/base.html", "hexq/functions/ui/static/app.js",
            "hexq/functions/ui/static/app.css"} <= set(names)


def test_the_application_s_core_and_functions_are_its_own(installed: Installed, app: Path) -> None:
    script = ("import core, functions, hexq, hexq.core.model, hexq.functions.bootstrap\n"
              "print(core.ORIGIN, functions.helper(), sep='\\n')\n"
              "print(hexq.core.model.__file__, hexq.functions.bootstrap.__file__, sep='\\n')\n")

    lines = _run(installed.bin / "python", "-c", script, cwd=app).splitlines()

    assert lines[:2] == ["the application's core", "the application's functions"]
    assert all(Path(path).is_relative_to(installed.site_packages / "hexq") for path in lines[2:])


def test_hexq_serve_runs_the_application_s_task_end_to_end(installed: Installed, app: Path) -> None:
    port = free_port()
    served = quickstart.QuickStart({}, "HEXQ_TASKS=app_tasks hexq serve",
                                   # A direct client checks the type itself, so it imports the module too.
                                   ["HEXQ_TASKS=app_tasks python app_submit.py sqlite:///hexq.db",
                                    f"python app_submit.py http://127.0.0.1:{port}"])

    output = quickstart.run(served, app, quickstart.clean_env(installed.bin), port)

    expected = "{'core': \"the application's core\", 'functions': \"the application's functions\", 'n': 7}"
    assert output.splitlines() == [expected, expected]


@pytest.mark.parametrize("flavour", ["sqlite", pytest.param("redis", marks=pytest.mark.redis), "http"])
def test_the_readme_quick_start_runs_verbatim_beside_the_application(installed: Installed, app: Path, flavour: str,
                                                                    request: pytest.FixtureRequest) -> None:
    port = free_port()
    url, env = quickstart.flavour(flavour, port, request)
    quick = quickstart.QuickStart.current()

    output = quickstart.run(quick.with_url(url), app, quickstart.clean_env(installed.bin, **env), port)

    assert quick.expected and output.splitlines()[-len(quick.expected):] == quick.expected

"""The README's Python quick start against real `hexq serve` processes, and the sync Client over real HTTP.

The quick start runs verbatim (tests/integration/quickstart.py): as written (sqlite), and with only the
URL in submit.py changed, to Redis and to the API over HTTP. test_wheel.py runs it again from a wheel.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import quickstart
from conftest import Served, free_port

from hexq import Client, TaskCancelled, TaskFailed, TaskRequest, TaskStatus, WaitTimeout

pytestmark = pytest.mark.slow


def test_the_readme_has_the_quick_start_that_is_tested() -> None:
    section = quickstart.readme_section()
    if section is None:
        pytest.xfail("README.md has no '## Python quick start' yet: tests/integration/quickstart.md is its text")
    assert section.strip() == quickstart.PROPOSED.read_text().strip()


@pytest.mark.parametrize("flavour", ["sqlite", pytest.param("redis", marks=pytest.mark.redis), "http"])
def test_the_quick_start_runs_verbatim(flavour: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    port = free_port()
    url, env = quickstart.flavour(flavour, port, request)
    quick = quickstart.QuickStart.current()

    output = quickstart.run(quick.with_url(url), tmp_path, quickstart.clean_env(Path(sys.executable).parent, **env),
                            port)

    assert quick.expected and output.splitlines()[-len(quick.expected):] == quick.expected


def test_the_client_over_a_real_api(serve: Callable[..., Served]) -> None:
    served = serve()  # the built-in example tasks: echo, fail, sleep, ...

    with Client.from_url(served.url) as client:
        echo = client.submit("echo", {"hello": "world"}, priority="high")
        [slept, failing] = client.submit_many([TaskRequest("sleep", {"seconds": 0.2}),
                                               TaskRequest("fail", {"probability": 1}, max_attempts=1)])
        later = client.submit("echo", delay=3600)

        assert echo.result(timeout=60) == {"hello": "world"}  # long polls through uvicorn
        assert slept.result(timeout=60) == {"slept": 0.2}
        with pytest.raises(TaskFailed) as caught:
            failing.result(timeout=60)
        with pytest.raises(WaitTimeout):
            later.result(timeout=0.5)
        later.cancel()
        with pytest.raises(TaskCancelled):
            later.result(timeout=60)
        assert caught.value.task.status is TaskStatus.DEAD and caught.value.error
        assert [t.id for t in client.dead().items] == [failing.id]
        assert client.stats().by_status[TaskStatus.SUCCEEDED] == 2
        assert {t.id for t in client.list_tasks(type="echo").items} == {echo.id, later.id}

"""The same API + worker flow on every backend, changing nothing but HEXQ_BACKEND.

Submit over the API, run one worker invocation, read the task back over the API, replay a dead
one: the application code and the requests are identical; only the URL differs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hexq.core.registry import Registry
from hexq.functions.api import create_app
from hexq.functions.bootstrap import Container, bootstrap
from hexq.functions.settings import Settings

AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
           "AWS_CONFIG_FILE": "/nonexistent/hexq-test", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/hexq-test"}


def registry() -> Registry:
    tasks = Registry()

    @tasks.task("echo")
    async def echo(payload: dict[str, Any]) -> dict[str, Any]:
        return payload

    @tasks.task("boom", max_attempts=1)
    async def boom(payload: dict[str, Any]) -> None:
        raise RuntimeError("boom")

    return tasks


@pytest.fixture(params=["memory", "sqlite", pytest.param("redis", marks=pytest.mark.redis),
                        pytest.param("aws", marks=pytest.mark.aws)])
async def backend_url(request: pytest.FixtureRequest, tmp_path: Path,
                      monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[str]:
    if request.param == "memory":
        yield "memory://"
    elif request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/hexq.db"
    elif request.param == "redis":
        yield request.getfixturevalue("redis_url") + f"?partition=swap{abs(hash(str(tmp_path))) % 10**8}"
    else:
        moto = pytest.importorskip("moto")
        for name, value in AWS_ENV.items():
            monkeypatch.setenv(name, value)
        with moto.mock_aws():
            yield "aws://?region=us-east-1&prefix=hexq-swap&long_poll=1"


async def _prepare(container: Container) -> None:
    create = getattr(container.backend, "create_resources", None)
    if create is not None:  # the aws backend on moto: production has template.yaml make these
        await create()


async def test_the_same_flow_runs_on_every_backend(backend_url: str) -> None:
    container = bootstrap(Settings(backend_url=backend_url, task_modules=(), idle_wait=0.2), registry=registry())
    await _prepare(container)
    transport = httpx.ASGITransport(app=create_app(container))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://hexq") as api:
            ok = await api.post("/v1/tasks", json={"type": "echo", "payload": {"hello": "swap"}, "priority": "high"})
            bad = await api.post("/v1/tasks", json={"type": "boom"})
            assert (ok.status_code, bad.status_code) == (202, 202)

            report = await container.invocation("swap-worker").run()
            assert (report.succeeded, report.dead) == (1, 1)

            done = (await api.get(f"/v1/tasks/{ok.json()['id']}")).json()
            assert (done["status"], done["result"], done["attempts"]) == ("succeeded", {"hello": "swap"}, 1)
            dead = (await api.get("/v1/dead")).json()["tasks"]
            assert [t["id"] for t in dead] == [bad.json()["id"]]
            replayed = await api.post("/v1/dead:replay", json={"ids": [bad.json()["id"]]})
            assert [t["status"] for t in replayed.json()["replayed"]] == ["queued"]
    finally:
        await container.backend.close()

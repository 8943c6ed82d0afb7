"""`hexq migrate copy`: a stopped deployment moves from one redis-server to a three-master Redis Cluster, and every
task is where it was: queued ones are claimed once each, scheduled ones keep their due time, finished and dead ones
are listed, an idempotency key still answers with its task, a paused queue stays paused. Real servers
(tests/redis_server.py); the figure (keys, seconds) is printed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from redis_server import flushed

from hexq.adapters.redis import RedisBackend, ShardedRedisBackend, from_url
from hexq.core.clock import SystemClock
from hexq.core.errors import ConfigurationError
from hexq.core.model import Priority, Settlement, TaskStatus
from hexq.core.registry import Registry, TaskSpec
from hexq.core.services import SubmitRequest, TaskService
from hexq.functions.cli import main
from hexq.functions.migrate import Refused, copy

pytestmark = pytest.mark.redis
QUEUES = ["default", "mail"]


@dataclass
class Deployment:
    """What the source holds, by id."""

    queued: set[str] = field(default_factory=set)
    scheduled: dict[str, float] = field(default_factory=dict)  # id -> run_at
    succeeded: set[str] = field(default_factory=set)
    dead: set[str] = field(default_factory=set)
    keyed: str = ""


def _service(backend: RedisBackend) -> TaskService:
    registry = Registry()
    registry.register(TaskSpec("echo", lambda payload: payload))
    return TaskService(backend, backend, registry, SystemClock())


async def _populate(url: str, target: str) -> Deployment:
    """30 queued tasks over two queues and four priorities, 5 due in an hour, one keyed; 3 claimed (left running:
    the copy must refuse), then settled 2 succeeded and 1 dead; `mail` paused."""
    backend = RedisBackend.from_url(url)
    service, made = _service(backend), Deployment()
    try:
        for i in range(30):
            request = SubmitRequest("echo", {"i": i}, Priority(i % 4), QUEUES[i % 2])
            made.queued.add((await service.submit(request)).task.id)
        for i in range(5):
            task = (await service.submit(SubmitRequest("echo", {"later": i}, delay=3600))).task
            made.scheduled[task.id] = task.run_at
        made.keyed = (await service.submit(SubmitRequest("echo", {"k": 1}, idempotency_key="k1"))).task.id
        made.queued.add(made.keyed)
        leases = await backend.claim(QUEUES, 3, lease_seconds=60, worker_id="old-worker")
        with pytest.raises(Refused, match="running lease"):
            await copy(url, target)
        ends = [TaskStatus.SUCCEEDED, TaskStatus.SUCCEEDED, TaskStatus.DEAD]
        assert await backend.settle([Settlement(lease, lease.task.moved_to(end)) for lease, end in
                                     zip(leases, ends, strict=True)]) == [True] * 3
        for lease, end in zip(leases, ends, strict=True):
            made.queued.discard(lease.task.id)
            (made.succeeded if end is TaskStatus.SUCCEEDED else made.dead).add(lease.task.id)
        assert await backend.pause("mail")
        return made
    finally:
        await backend.close()


async def _check(url: str, made: Deployment, new: int = 0) -> dict[str, Any]:
    """Everything the copy holds is where it was; `new` tasks submitted now are served next to the old ones."""
    backend = from_url(url)
    try:
        fresh = {(await _service(backend).submit(SubmitRequest("echo", {"new": i}, queue=QUEUES[i % 2]))).task.id
                 for i in range(new)}
        for task_id, run_at in made.scheduled.items():
            task = await backend.get(task_id)
            assert task is not None and (task.status, task.run_at) == (TaskStatus.SCHEDULED, run_at)
        for ids, status in ((made.succeeded, TaskStatus.SUCCEEDED), (made.dead, TaskStatus.DEAD)):
            assert {t.status for t in [await backend.get(i) for i in ids] if t is not None} == {status}
        again = await _service(backend).submit(SubmitRequest("echo", {"k": 1}, idempotency_key="k1"))
        assert (again.created, again.task.id) == (False, made.keyed)
        assert await backend.paused() == frozenset({"mail"})
        claimed = await _claim_all(backend)
        assert not {task.queue for task in [await backend.get(i) for i in claimed] if task} & {"mail"}
        assert await backend.resume("mail")
        claimed += await _claim_all(backend)
        assert len(claimed) == len(set(claimed))  # none twice
        assert set(claimed) == made.queued | fresh  # lost: none; unexpected: none
        return {"claimed": len(claimed), "scheduled": len(made.scheduled)}
    finally:
        await backend.close()


async def _claim_all(backend: RedisBackend | ShardedRedisBackend) -> list[str]:
    claimed: list[str] = []
    while leases := await backend.claim(QUEUES, 100, lease_seconds=60, worker_id="new"):
        claimed += [lease.task.id for lease in leases]
    return claimed


@pytest.fixture
def servers(redis_url: str, redis_cluster_url: str) -> Iterator[tuple[str, str]]:
    with flushed(redis_url), flushed(redis_cluster_url):
        yield redis_url, redis_cluster_url


@pytest.mark.parametrize("layout", ["", "?shards=per-queue"])
def test_a_stopped_deployment_moves_to_a_cluster_with_nothing_lost(servers: tuple[str, str], layout: str,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Then every process starts on the cluster, unsharded as before or spread (`shards=per-queue`): there the
    copied tasks drain in place from the legacy shard while new ones go to their queues' shards."""
    source, target = servers
    made = asyncio.run(_populate(source, target))
    assert main(["migrate", "copy", "--from", source, "--to", target, "--json"]) == 0
    copied = json.loads(capsys.readouterr().out)
    assert copied["by_status"] == {"queued": 28, "scheduled": 5, "running": 0, "succeeded": 2, "failed": 0,
                                   "dead": 1, "cancelled": 0}
    assert main(["migrate", "status", "--backend", target + layout, "--json"]) == 0
    before = json.loads(capsys.readouterr().out)
    assert [row["shard"] for row in before] == ["legacy"] and before[0]["by_status"]["queued"] == 28
    checked = asyncio.run(_check(target + layout, made, new=20 if layout else 0))
    if layout:  # the copied tasks were claimed from the legacy shard; the new ones from their queues' shards
        assert main(["migrate", "status", "--backend", target + layout, "--json"]) == 0
        after = {row["shard"]: row for row in json.loads(capsys.readouterr().out)}
        assert set(after) == {"legacy", *QUEUES} and after["mail"]["queues"] == ["mail"]
        assert [after[shard]["by_status"]["running"] for shard in ("legacy", *QUEUES)] == [28, 10, 10]
        assert after["legacy"]["by_status"]["scheduled"] == 5  # due in an hour: the legacy shard is not drained
        assert main(["migrate", "status", "--backend", target + layout]) == 0
        assert "legacy shard: still holds tasks" in capsys.readouterr().out
    with capsys.disabled():
        print(f"\nmigrate copy: {copied['keys']} keys in {copied['seconds']} s (one node -> 3-master cluster"
              f"{', then sharded' if layout else ''}); "
              f"claimed {checked['claimed']} ({len(made.queued)} copied + {20 if layout else 0} new), lost 0, "
              "twice 0; "
              f"{checked['scheduled']} scheduled kept their due time")
    # The source is untouched: a copy, not a move. And a second copy refuses to overwrite the first.
    assert asyncio.run(_backlog(source)) == 28
    assert main(["migrate", "copy", "--from", source, "--to", target]) == 1
    assert "already holds keys" in capsys.readouterr().err


async def _backlog(url: str) -> int:
    backend = RedisBackend.from_url(url)
    try:
        return (await backend.stats()).backlog
    finally:
        await backend.close()


@pytest.mark.parametrize(("source", "target"), [("redis://127.0.0.1:1/0?partition=a", "redis://127.0.0.1:2/0"),
                                                ("redis://127.0.0.1:1/0?shards=per-queue", "redis://127.0.0.1:2/0")])
def test_urls_it_cannot_use_are_refused_before_anything_connects(source: str, target: str) -> None:
    with pytest.raises(ConfigurationError):
        asyncio.run(copy(source, target))

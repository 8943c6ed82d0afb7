"""The sharded Redis layout (adapters/redis/sharded.py) on the 3-master cluster: queues land on different masters,
a worker claims across them (strict priority as of its look, FIFO within a shard), blocking claims wake for any
shard, pauses reach every shard, hot queues spread and still dedup keyed requests, listings page over shards, and
tasks stored before the switch drain in place. The whole contract suite runs on this layout too (leg redis_sharded)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

import pytest
from redis.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot
from redis_server import LinkedClock, fresh_backend, sync_client

from hexq.adapters.redis import RedisBackend, ShardedRedisBackend
from hexq.adapters.redis.keys import Keys
from hexq.adapters.redis.shards import shard_of_id
from hexq.core import outcome
from hexq.core.model import Lease, Priority, Settlement, Task, TaskQuery, TaskStatus, new_task_id

pytestmark = pytest.mark.redis
MakeTask = Callable[..., Task]
LEASE = 30.0


def spread_queues(count: int) -> list[str]:
    """`count` queue names whose shard tags hash into `count` different thirds-like ranges of the slots, so on a
    cluster of `count` masters (equal ranges) each lands on its own master."""
    names = []
    for k in range(count):
        width = 16384 / count
        names.append(next(f"q{k}x{j}" for j in range(100_000)
                          if k * width + width / 4 <= key_slot(Keys("hexq", f"q{k}x{j}").tag.encode())
                          < (k + 1) * width - width / 4))
    return names


@pytest.fixture
async def backend(redis_cluster_url: str, clock: LinkedClock) -> AsyncIterator[ShardedRedisBackend]:
    async with fresh_backend(redis_cluster_url + "?shards=per-queue&hot=hot:3", clock) as backend:
        assert isinstance(backend, ShardedRedisBackend)
        yield backend


async def drain(backend: ShardedRedisBackend, queues: list[str], n: int = 4) -> list[Lease]:
    """Claim and settle (succeeded) until nothing is left: every lease taken, in claim order."""
    taken: list[Lease] = []
    settle: list[Settlement] = []
    while True:
        applied, leases = await backend.settle_and_claim(settle, queues, n, lease_seconds=LEASE, worker_id="w")
        assert all(applied)
        if not leases:
            return taken
        taken += leases
        settle = [Settlement(lease, outcome.succeeded(lease.task, None)) for lease in leases]


def master_of(client: RedisCluster, key: str) -> str:
    node: ClusterNode = client.get_node_from_key(key)
    return node.name


async def test_queues_land_on_different_masters(backend: ShardedRedisBackend, make_task: MakeTask,
                                                redis_cluster_url: str) -> None:
    queues = spread_queues(3)
    await backend.enqueue([make_task(queue=queue) for queue in queues for _ in range(3)])
    client = sync_client(redis_cluster_url)
    assert isinstance(client, RedisCluster)
    try:
        masters = {queue: master_of(client, backend.shard(queue).keys.ready(queue)) for queue in queues}
        assert len(set(masters.values())) == 3
        for queue in queues:  # every key of a queue's shard is on its master: one slot per shard
            keys = list(client.scan_iter(match=f"hexq:{{hexq/{queue}}}:*", target_nodes=RedisCluster.PRIMARIES))
            assert keys and {master_of(client, key) for key in keys} == {masters[queue]}
    finally:
        client.close()


async def test_a_worker_over_several_shards_takes_every_task_once(backend: ShardedRedisBackend,
                                                                   make_task: MakeTask) -> None:
    queues = spread_queues(3)
    tasks = [make_task(queue=queues[i % 3], payload={"i": i}) for i in range(30)]
    await backend.enqueue(tasks)
    taken = await drain(backend, queues)
    assert sorted(lease.task.id for lease in taken) == sorted(task.id for task in tasks)
    for queue in queues:  # FIFO within each shard
        mine = [lease.task.payload["i"] for lease in taken if lease.task.queue == queue]
        assert mine == sorted(mine)
    stats = await backend.stats()
    assert stats.by_status.get(TaskStatus.SUCCEEDED) == 30 and stats.backlog == 0


async def test_priority_is_strict_across_shards_and_a_lower_level_fills_the_rest(
        backend: ShardedRedisBackend, make_task: MakeTask) -> None:
    a, b, c = spread_queues(3)
    low = [make_task(queue=a, priority=Priority.LOW) for _ in range(3)]
    high = [make_task(queue=b, priority=Priority.HIGH), make_task(queue=c, priority=Priority.HIGH)]
    critical = make_task(queue=c, priority=Priority.CRITICAL)
    await backend.enqueue([*low, *high, critical])
    first = await backend.claim([a, b, c], 1, lease_seconds=LEASE, worker_id="w")
    assert [lease.task.id for lease in first] == [critical.id]
    second = await backend.claim([a, b, c], 4, lease_seconds=LEASE, worker_id="w")
    assert {lease.task.id for lease in second[:2]} == {task.id for task in high}
    assert [lease.task.priority for lease in second] == [Priority.HIGH, Priority.HIGH, Priority.LOW, Priority.LOW]


async def test_a_blocked_claim_over_several_shards_wakes_for_any_of_them(backend: ShardedRedisBackend,
                                                                        make_task: MakeTask) -> None:
    a, b, c = spread_queues(3)
    waiting = asyncio.create_task(backend.claim([a, b, c], 1, lease_seconds=LEASE, worker_id="w", wait=10.0))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    task = make_task(queue=c)
    await backend.enqueue([task])
    got = await asyncio.wait_for(waiting, 10.0)
    assert [lease.task.id for lease in got] == [task.id]


async def test_a_pause_reaches_every_shard_of_the_queue(backend: ShardedRedisBackend, make_task: MakeTask) -> None:
    a, b = spread_queues(2)
    hot = [make_task(queue="hot") for _ in range(6)]
    await backend.enqueue([make_task(queue=a), *hot, make_task(queue=b)])
    assert await backend.pause("hot") and await backend.pause(a)
    assert await backend.paused() == frozenset({"hot", a})
    got = await drain(backend, [a, b, "hot"])
    assert [lease.task.queue for lease in got] == [b]
    await backend.resume("hot")
    assert sorted(lease.task.id for lease in await drain(backend, [a, b, "hot"])) == sorted(t.id for t in hot)


async def test_a_hot_queue_spreads_over_its_shards_fifo_within_each(backend: ShardedRedisBackend,
                                                                   make_task: MakeTask) -> None:
    tasks = []
    for i in range(12):  # one request each: round robin over the 3 shards
        task = replace(make_task(queue="hot", payload={"i": i}), id=new_task_id())
        task = replace(task, id=backend.task_ids([task])[0])
        tasks.append(task)
        await backend.enqueue([task])
    codes = {shard_of_id(task.id) for task in tasks}
    assert len(codes) == 3 and codes == set(backend.layout.shards("hot"))
    taken = await drain(backend, ["hot"], n=5)
    assert sorted(lease.task.id for lease in taken) == sorted(task.id for task in tasks)
    for code in codes:
        mine = [lease.task.payload["i"] for lease in taken if shard_of_id(lease.task.id) == code]
        assert mine == sorted(mine) and len(mine) == 4


async def test_a_keyed_request_to_a_hot_queue_is_one_task_under_concurrency(backend: ShardedRedisBackend,
                                                                           make_task: MakeTask) -> None:
    def request() -> Task:
        task = replace(make_task(queue="hot", idempotency_key="order-7", tenant="acme"), id=new_task_id())
        return replace(task, id=backend.task_ids([task])[0])

    results = await asyncio.gather(*(backend.enqueue([request()]) for _ in range(50)))
    assert len({stored[0].id for stored in results}) == 1
    assert (await backend.stats()).backlog == 1


async def test_pages_over_shards_list_every_task_once_newest_first(backend: ShardedRedisBackend,
                                                                  make_task: MakeTask, clock: LinkedClock) -> None:
    queues = spread_queues(3)
    made = []
    for i in range(25):
        clock.advance(1)  # created times differ, so the order across shards is defined
        task = make_task(queue=queues[i % 3], created_at=clock.now(), run_at=clock.now())
        await backend.enqueue([task])
        made.append(task.id)
    listed: list[str] = []
    cursor = None
    while True:
        page = await backend.query(TaskQuery(limit=4, cursor=cursor))
        listed += [task.id for task in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert listed == made[::-1]
    only = await backend.query(TaskQuery(queue=queues[1], limit=100))
    assert [task.id for task in only.items] == [made[i] for i in range(24, -1, -1) if i % 3 == 1]
    assert (await backend.query(TaskQuery(queue="no such/queue", limit=10))).items == []  # not a key part: none


async def test_tasks_stored_before_the_switch_drain_in_place(redis_cluster_url: str, backend: ShardedRedisBackend,
                                                            make_task: MakeTask, clock: LinkedClock) -> None:
    """Migration (a): the same deployment, restarted with shards=per-queue. The tasks an unsharded backend stored
    stay in the legacy shard: read by id, claimed, swept, listed, next to new ones. Nothing lost, nothing twice."""
    queues = spread_queues(2)
    old = RedisBackend.from_url(redis_cluster_url, test_clock=True)
    try:
        before = [replace(make_task(queue=queues[i % 2], payload={"old": i}), id=new_task_id()) for i in range(10)]
        later = replace(make_task(queue=queues[0]), id=new_task_id(), status=TaskStatus.SCHEDULED,
                        run_at=clock.now() + 60)
        await old.enqueue([*before, later])
        leased = await old.claim([queues[1]], 1, lease_seconds=5, worker_id="old")  # its worker then dies
    finally:
        await old.close()
    assert all(shard_of_id(task.id) is None for task in before)
    new = [make_task(queue=queues[i % 2], payload={"new": i}) for i in range(10)]
    await backend.enqueue(new)
    assert (await backend.get(before[0].id)) is not None and (await backend.get(new[0].id)) is not None
    clock.advance(61)  # the scheduled one is due, the dead worker's lease has expired
    reclaimed = await backend.reclaim_expired(100, LEASE)
    assert [lease.task.id for lease in reclaimed] == [leased[0].task.id]
    assert await backend.settle([Settlement(reclaimed[0], outcome.lost(reclaimed[0].task))]) == [True]  # as the poller
    clock.advance(3600)  # past its retry's backoff
    taken = await drain(backend, queues)
    expected = [task.id for task in before] + [later.id] + [task.id for task in new]
    assert sorted(lease.task.id for lease in taken) == sorted(expected)  # lost 0, twice 0
    stats = await backend.stats()
    assert stats.backlog == 0 and stats.by_status.get(TaskStatus.SUCCEEDED) == 21
    assert len((await backend.query(TaskQuery(limit=100))).items) == 21
    legacy = (await backend.shard_stats())[0]
    assert legacy[0] == "" and legacy[2].by_status.get(TaskStatus.SUCCEEDED) == 11  # drained: all done, in place
    assert not any(legacy[2].by_status.get(s) for s in (TaskStatus.QUEUED, TaskStatus.SCHEDULED, TaskStatus.RUNNING))

"""Redis specifics: the scripts and their key schema (one slot), blocking wake-ups, the server's clock,
round trips per batch, and driver errors as BackendUnavailable / ValidationError."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from importlib.resources import files

import pytest
import redis
from redis.cluster import RedisCluster
from redis.crc import key_slot
from redis_server import LinkedClock, flush, free_port, fresh_backend, sync_client

from hexq.adapters.redis import RedisBackend
from hexq.adapters.redis._lua import LIBRARY, STANDALONE_SCRIPTS, TASK_SCRIPTS, source
from hexq.adapters.redis.keys import Keys
from hexq.core import outcome
from hexq.core.clock import SystemClock
from hexq.core.errors import BackendUnavailable, ConfigurationError, ValidationError
from hexq.core.model import Settlement, Task, TaskQuery, TaskStatus
from hexq.core.schedule import Schedule
from hexq.functions.bootstrap import make_backend

pytestmark = pytest.mark.redis
MakeTask = Callable[..., Task]
LEASE = 30.0


@pytest.fixture(params=["redis", "redis_cluster"])
def url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue(f"{request.param}_url")  # type: ignore[no-any-return]


@pytest.fixture
async def backend(url: str, clock: LinkedClock) -> AsyncIterator[RedisBackend]:
    async with fresh_backend(url, clock) as backend:
        yield backend


def evalsha_calls(client: redis.Redis) -> int:
    return int(client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))


# -- the scripts and the key schema -----------------------------------------------------------------
def test_every_script_file_is_registered_and_documented() -> None:
    on_disk = {p.name.removesuffix(".lua") for p in (files("hexq.adapters.redis") / "scripts").iterdir()
               if p.name.endswith(".lua")}
    assert on_disk == {LIBRARY, *TASK_SCRIPTS, *STANDALONE_SCRIPTS}
    for name in (*TASK_SCRIPTS, *STANDALONE_SCRIPTS):
        header = (files("hexq.adapters.redis") / "scripts" / f"{name}.lua").read_text().split("\n\n")[0]
        assert header.startswith(f"-- {name}:")
        assert all(part in header for part in ("KEYS", "ARGV", "Returns")), name


def test_every_script_compiles_on_the_server(redis_url: str) -> None:
    with redis.Redis.from_url(redis_url) as client:
        for name in (*TASK_SCRIPTS, *STANDALONE_SCRIPTS):
            assert client.script_load(source(name))


def test_every_key_of_a_partition_hashes_to_its_tag_slot() -> None:
    for keys in (Keys(), Keys("tenant-a.eu:1")):
        derived = [keys.task("0123abcd"), keys.ready("emails"), keys.wake("emails"), keys.schedules,
                   *(keys.status(status.value) for status in TaskStatus)]
        derived += [prefix + "x" for prefix in keys.prefixes()]  # what the scripts build
        assert {key_slot(key.encode()) for key in keys.block() + derived} == {key_slot(keys.tag.encode())}


async def test_a_cluster_workload_leaves_every_key_in_one_slot(redis_cluster_url: str, make_task: MakeTask,
                                                               clock: LinkedClock) -> None:
    async with fresh_backend(redis_cluster_url, clock) as backend:
        await backend.enqueue([make_task(queue=q, idempotency_key=q) for q in ("a", "b", "c")])
        await backend.enqueue([make_task(status=TaskStatus.SCHEDULED, run_at=clock.now() + 5)])
        leases = await backend.claim(["a", "b"], 2, lease_seconds=LEASE, worker_id="w", wait=0.05)
        await backend.settle([Settlement(leases[0], outcome.succeeded(leases[0].task, 1))])
        await backend.put_schedule(Schedule("tick", "@every 1m", "echo", next_run=clock.now() + 60))
        await backend.stats()

        client = sync_client(redis_cluster_url)
        try:
            stored = client.keys("*", target_nodes=RedisCluster.PRIMARIES)
        finally:
            client.close()
    assert len(stored) > 10
    assert {key_slot(str(key).encode()) for key in stored} == {key_slot(Keys().tag.encode())}


@pytest.mark.parametrize("bad", ["a b", "", "x" * 65, "ü", "../etc", "{other}"])
def test_scripts_reject_invalid_key_parts(redis_url: str, bad: str, make_task: MakeTask) -> None:
    keys = Keys()
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        flush(client)
        client.set(keys.test_clock, "1700000000.0")
        common = ["1", *keys.prefixes()]
        task_args = [bad, "queued", "default", 1, "echo", "default", 0, "1.0", "", "", "{}"]
        queue_args = ["id1", "queued", bad, 1, "echo", "default", 0, "1.0", "", "", "{}"]
        for script, args in (("enqueue", [0, *task_args]), ("enqueue", [0, *queue_args]),
                             ("claim", [1, "30.0", "w", 10, bad])):
            with pytest.raises(redis.ResponseError, match="hexq: invalid key part"):
                client.eval(source(script), len(keys.block()), *keys.block(), *common, *args)
        assert client.keys("*") == [keys.test_clock]  # nothing was written


async def test_invalid_key_parts_never_reach_redis(backend: RedisBackend, make_task: MakeTask) -> None:
    with pytest.raises(ValidationError):
        await backend.enqueue([make_task(queue="two words")])
    with pytest.raises(ValidationError):
        await backend.claim(["ok", "not/ok"], 1, lease_seconds=LEASE, worker_id="w")
    assert await backend.get("no/such id") is None
    with pytest.raises(ConfigurationError):
        RedisBackend.from_url("redis://127.0.0.1:6379/0?partition=a%20b")


# -- blocking wait ----------------------------------------------------------------------------------
async def test_a_waiting_claim_wakes_for_a_submit_from_another_connection(url: str, backend: RedisBackend,
                                                                         make_task: MakeTask) -> None:
    producer = RedisBackend.from_url(url, test_clock=True)  # its own pool; shares the test clock key
    task = make_task()

    async def submit_later() -> None:
        await asyncio.sleep(0.05)
        await producer.enqueue([task])

    submit = asyncio.create_task(submit_later())
    leases = await backend.claim(["other", "default"], 5, lease_seconds=LEASE, worker_id="w", wait=60.0)
    await submit
    await producer.close()

    assert [lease.task.id for lease in leases] == [task.id]


async def test_an_idle_claim_blocks_instead_of_polling(redis_url: str, clock: LinkedClock) -> None:
    async with fresh_backend(redis_url, clock) as backend:
        with redis.Redis.from_url(redis_url) as client:
            before = evalsha_calls(client)
            assert await backend.claim(["default"], 1, lease_seconds=LEASE, worker_id="w", wait=0.5) == []
            assert evalsha_calls(client) - before <= 2  # one claim before the BLPOP, one after it times out


def hmget_calls(client: redis.Redis) -> int:
    return int(client.info("commandstats").get("cmdstat_hmget", {}).get("calls", 0))


@pytest.mark.parametrize("how", ["settle", "cancel"])
async def test_waiting_for_a_task_blocks_on_the_server_until_it_finishes(redis_url: str, clock: LinkedClock,
                                                                          make_task: MakeTask, how: str) -> None:
    async with fresh_backend(redis_url, clock) as backend:
        task = make_task()
        await backend.enqueue([task])
        waiters = [asyncio.create_task(backend.wait_finished(task.id, 30)) for _ in range(3)]
        await asyncio.sleep(0.3)  # all three are blocked in BLPOP by now
        with redis.Redis.from_url(redis_url) as client:
            reads_before = hmget_calls(client)
            await asyncio.sleep(1.0)
            assert hmget_calls(client) == reads_before  # blocked on the server: not one read while waiting
        if how == "settle":
            [lease] = await backend.claim(["default"], 1, lease_seconds=LEASE, worker_id="w")
            await backend.settle([Settlement(lease, outcome.succeeded(lease.task, "ok"))])
        else:
            assert await backend.transition(task.moved_to(TaskStatus.CANCELLED), TaskStatus.QUEUED)
        finished = await asyncio.wait_for(asyncio.gather(*waiters), 10)
    expected = TaskStatus.SUCCEEDED if how == "settle" else TaskStatus.CANCELLED
    assert [t.status if t is not None else None for t in finished] == [expected] * 3


async def test_waiting_returns_the_task_as_it_is_when_time_is_up(backend: RedisBackend, make_task: MakeTask) -> None:
    task = make_task()
    await backend.enqueue([task])

    assert (await backend.wait_finished(task.id, 0.2)).status is TaskStatus.QUEUED  # type: ignore[union-attr]
    assert await backend.wait_finished("no-such-task", 0.2) is None
    assert await backend.wait_finished("not a key part!", 0.2) is None


async def test_a_cancelled_wait_leaves_the_backend_usable(backend: RedisBackend, make_task: MakeTask) -> None:
    waiting = asyncio.create_task(backend.claim(["default"], 1, lease_seconds=LEASE, worker_id="w", wait=60.0))
    await asyncio.sleep(0.05)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting

    task = make_task()
    await backend.enqueue([task])
    assert [lease.task.id for lease in await backend.claim(["default"], 1, lease_seconds=LEASE, worker_id="w",
                                                           wait=5.0)] == [task.id]


# -- the server's clock -----------------------------------------------------------------------------
async def test_without_a_test_clock_the_server_time_decides(url: str, make_task: MakeTask) -> None:
    async with fresh_backend(url) as backend:
        client = sync_client(url)
        try:
            seconds, micros = client.time()
        finally:
            client.close()
        server_now = seconds + micros / 1e6
        due = make_task(status=TaskStatus.SCHEDULED, run_at=server_now - 1)
        later = make_task(status=TaskStatus.SCHEDULED, run_at=server_now + 3600)
        soon = make_task(status=TaskStatus.SCHEDULED, run_at=server_now + 1.0)
        await backend.enqueue([due, later])

        [lease] = await backend.claim(["default"], 5, lease_seconds=LEASE, worker_id="w")
        assert lease.task.id == due.id
        assert server_now + LEASE <= lease.expires_at
        # Nothing ready: the wait ends when `soon` falls due, though nobody promotes it.
        await backend.enqueue([soon])
        leases = await backend.claim(["default"], 5, lease_seconds=LEASE, worker_id="w", wait=30.0)
        assert [lease.task.id for lease in leases] == [soon.id]


# -- batches are one round trip ---------------------------------------------------------------------
async def test_each_batch_operation_is_one_round_trip(redis_url: str, clock: LinkedClock, make_task: MakeTask) -> None:
    async with fresh_backend(redis_url, clock) as backend:
        with redis.Redis.from_url(redis_url) as client:
            await backend.ping()  # the pool's first connection, and the scripts, are warm below
            await backend.enqueue([make_task()])
            await backend.claim(["default"], 1, lease_seconds=LEASE, worker_id="w")
            calls = []
            for step in ("enqueue", "claim", "extend", "settle"):
                before = evalsha_calls(client)
                if step == "enqueue":
                    await backend.enqueue([make_task() for _ in range(100)])
                elif step == "claim":
                    leases = await backend.claim(["default"], 100, lease_seconds=LEASE, worker_id="w")
                elif step == "extend":
                    assert all(await backend.extend(leases, LEASE))
                else:
                    assert all(await backend.settle([Settlement(lease, outcome.succeeded(lease.task, None))
                                                     for lease in leases]))
                calls.append(evalsha_calls(client) - before)
    assert len(leases) == 100
    assert calls == [1, 1, 1, 1]


async def test_concurrent_claimers_never_share_a_task(url: str, backend: RedisBackend, make_task: MakeTask) -> None:
    others = [RedisBackend.from_url(url, test_clock=True) for _ in range(2)]
    tasks = [make_task() for _ in range(200)]
    await backend.enqueue(tasks)

    async def drain(b: RedisBackend, n: int) -> list[tuple[str, int]]:
        claimed: list[tuple[str, int]] = []
        while leases := await b.claim(["default"], n, lease_seconds=LEASE, worker_id="w"):
            claimed += [(lease.task.id, lease.token) for lease in leases]
        return claimed

    claims = [c for part in await asyncio.gather(drain(backend, 1), *(drain(b, 3) for b in others)) for c in part]
    for other in others:
        await other.close()

    assert sorted(task_id for task_id, _ in claims) == sorted(t.id for t in tasks)
    assert len({token for _, token in claims}) == len(tasks)


async def test_a_bounded_scan_returns_short_pages_but_every_match_once(backend: RedisBackend, make_task: MakeTask,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("hexq.adapters.redis.backend.QUERY_SCAN", 4)  # examine at most 4 entries per call
    tasks = [make_task(queue=("a", "b", "b")[i % 3]) for i in range(30)]
    await backend.enqueue(tasks)

    seen: list[str] = []
    sizes: list[int] = []
    page = await backend.query(TaskQuery(queue="a", limit=3))
    while True:
        seen += [t.id for t in page.items]
        sizes.append(len(page.items))
        if page.next_cursor is None:
            break
        page = await backend.query(TaskQuery(queue="a", limit=3, cursor=page.next_cursor))

    assert seen == [t.id for t in reversed(tasks) if t.queue == "a"]
    assert max(sizes) <= 3 and min(sizes) < 3


async def test_close_then_use_reopens(backend: RedisBackend, make_task: MakeTask) -> None:
    task = make_task()
    await backend.enqueue([task])
    assert await backend.claim(["other"], 1, lease_seconds=LEASE, worker_id="w", wait=0.05) == []
    await backend.close()

    assert await backend.get(task.id) == task
    assert len(await backend.claim(["default"], 1, lease_seconds=LEASE, worker_id="w", wait=0.05)) == 1


# -- errors and URLs --------------------------------------------------------------------------------
@pytest.mark.parametrize("scheme", ["redis", "redis+cluster"])
async def test_a_closed_port_is_backend_unavailable(scheme: str, make_task: MakeTask) -> None:
    backend = RedisBackend.from_url(f"{scheme}://127.0.0.1:{free_port()}?socket_connect_timeout=0.5")
    for call in (backend.ping(), backend.enqueue([make_task()]), backend.get("abc")):
        with pytest.raises(BackendUnavailable) as caught:
            await call
        assert caught.value.backend == "redis"
        assert caught.value.__cause__ is not None
    await backend.close()


async def test_out_of_memory_is_backend_unavailable(redis_url: str, clock: LinkedClock, make_task: MakeTask) -> None:
    async with fresh_backend(redis_url, clock) as backend:
        with redis.Redis.from_url(redis_url) as client:
            client.config_set("maxmemory", 1)  # noeviction (the default): every write is refused
            try:
                with pytest.raises(BackendUnavailable) as caught:
                    await backend.enqueue([make_task()])
                assert isinstance(caught.value.__cause__, redis.exceptions.OutOfMemoryError)
            finally:
                client.config_set("maxmemory", 0)
        assert (await backend.stats()).by_status[TaskStatus.QUEUED] == 0


@pytest.mark.parametrize("url", ["redis://127.0.0.1:1/0", "rediss://user:secret@127.0.0.1:1/2?socket_timeout=5",
                                 "redis+cluster://127.0.0.1:1,127.0.0.1:2?partition=eu"])
def test_make_backend_builds_redis_backends_without_connecting(url: str) -> None:
    backend = make_backend(url, SystemClock())
    assert isinstance(backend, RedisBackend)
    assert backend.name == "redis"


@pytest.mark.parametrize("url", ["redis://h/0?socket_timeout=0", "redis://h/0?socket_connect_timeout=x",
                                 "redis+cluster://h1,h2:1", "redis+cluster://h:1?db=2", "redis://h?partition=",
                                 "memcached://h:1"])
def test_bad_urls_are_configuration_errors(url: str) -> None:
    with pytest.raises(ConfigurationError):
        RedisBackend.from_url(url)


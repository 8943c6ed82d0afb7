"""Redis specifics: the scripts and their key schema (one slot), blocking wake-ups, the server's clock,
round trips per batch, and driver errors as BackendUnavailable / ValidationError."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import replace
from importlib.resources import files
from pathlib import Path

import pytest
import redis
from redis.cluster import RedisCluster
from redis.crc import key_slot
from redis_server import LinkedClock, flush, free_port, fresh_backend, sync_client, wait_until

from hexq.adapters.redis import RedisBackend
from hexq.adapters.redis._lua import FRAGMENTS, LIBRARY, STANDALONE_SCRIPTS, TASK_SCRIPTS, source
from hexq.adapters.redis.keys import Keys
from hexq.core import idempotency, outcome
from hexq.core.clock import SystemClock
from hexq.core.codec import task_to_dict
from hexq.core.errors import BackendUnavailable, ConfigurationError, ValidationError
from hexq.core.model import Lease, Priority, Settlement, Task, TaskQuery, TaskStatus
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


def script_calls(client: redis.Redis) -> int:
    """Script calls so far: EVALSHA, or FCALL of the function library (see hexq.adapters.redis._lua)."""
    stats = client.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "fcall"))


# -- the scripts and the key schema -----------------------------------------------------------------
def test_every_script_file_is_registered_and_documented() -> None:
    on_disk = {p.name.removesuffix(".lua") for p in (files("hexq.adapters.redis") / "scripts").iterdir()
               if p.name.endswith(".lua")}
    fragments = {part for parts in FRAGMENTS.values() for part in parts}
    assert on_disk == {LIBRARY, *fragments, *TASK_SCRIPTS, *STANDALONE_SCRIPTS}
    for name in (LIBRARY, *fragments, *TASK_SCRIPTS, *STANDALONE_SCRIPTS):
        header = (files("hexq.adapters.redis") / "scripts" / f"{name}.lua").read_text().split("\n\n")[0]
        assert header.startswith(f"-- {name}:")
        documented = ("KEYS", "ARGV") if name == LIBRARY else ("ARGV", "Returns") if name in fragments else (
            "KEYS", "ARGV", "Returns")
        assert all(part in header for part in documented), name


def test_every_script_compiles_on_the_server(redis_url: str) -> None:
    with redis.Redis.from_url(redis_url) as client:
        for name in (*TASK_SCRIPTS, *STANDALONE_SCRIPTS):
            assert client.script_load(source(name))


def test_every_key_of_a_partition_hashes_to_its_tag_slot() -> None:
    for keys in (Keys(), Keys("tenant-a.eu:1")):
        derived = [keys.task("0123abcd"), keys.ready("emails"), keys.wake("emails"), keys.schedules, keys.test_clock,
                   keys.waiting, keys.watch("0123abcd"), keys.done("0123abcd"), keys.rate_bucket("x"), keys.paused,
                   *(keys.status(status.value) for status in TaskStatus)]
        derived += [keys.prefix + name for name in ("seq", "token", "all", "delayed", "leases", "finished", "idem",
                                                    "queues", "task:x", "ready:x")]  # what the scripts build
        assert {key_slot(key.encode()) for key in [keys.prefix, *derived]} == {key_slot(keys.tag.encode())}


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
def test_scripts_reject_invalid_key_parts(redis_url: str, bad: str) -> None:
    keys = Keys()
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        flush(client)
        client.set(keys.test_clock, "1700000000.0")
        calls = [("enqueue", [1, "0 1", f"{bad} default 1 queued 0 1.0 0.0 echo 0 default", "{}"]),
                 ("enqueue", [1, "0 1", f"id1 {bad} 1 queued 0 1.0 0.0 echo 0 default", "{}"]),
                 ("settle", [f"{bad} 1 succeeded 1 1.0 0.0", "{}"]),
                 ("extend", ["30.0", f"{bad} 1"]),
                 ("request_cancel", [bad]),
                 ("claim", [1, "30.0", "w", 10, bad])]
        for script, args in calls:
            with pytest.raises(redis.ResponseError, match="hexq: invalid key part"):
                client.eval(source(script), 1, keys.prefix, "1", *args)
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
            before = script_calls(client)
            assert await backend.claim(["default"], 1, lease_seconds=LEASE, worker_id="w", wait=0.5) == []
            assert script_calls(client) - before <= 2  # one claim before the BLPOP, one after it times out


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
                before = script_calls(client)
                if step == "enqueue":
                    await backend.enqueue([make_task() for _ in range(100)])
                elif step == "claim":
                    leases = await backend.claim(["default"], 100, lease_seconds=LEASE, worker_id="w")
                elif step == "extend":
                    assert all(await backend.extend(leases, LEASE))
                else:
                    assert all(await backend.settle([Settlement(lease, outcome.succeeded(lease.task, None))
                                                     for lease in leases]))
                calls.append(script_calls(client) - before)
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
                # Reads go on: the functions that only read say so (Redis refuses the others outright).
                assert (await backend.stats()).by_status[TaskStatus.QUEUED] == 0
                assert (await backend.query(TaskQuery())).items == []
                assert await backend.backlog() == 0 and await backend.now() == clock.now()
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



# -- the cost of a batch: commands per task, wake tokens per call ------------------------------------
def command_calls(client: redis.Redis) -> dict[str, int]:
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in client.info("commandstats").items()}


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {name: calls - before.get(name, 0) for name, calls in after.items() if calls != before.get(name, 0)}


async def test_a_batch_costs_one_hash_command_per_task_and_step(redis_url: str, clock: LinkedClock,
                                                                make_task: MakeTask) -> None:
    """What makes Redis's single thread cheap per task: every index change of a batch is one command per
    key, so only the task hash is touched once per task per step (twice for a claim: read, then lease)."""
    async with fresh_backend(redis_url, clock) as backend:
        with redis.Redis.from_url(redis_url, decode_responses=True) as client:
            await backend.enqueue([make_task()])  # the scripts are loaded below
            await backend.claim(["default"], 1, lease_seconds=LEASE, worker_id="w")
            steps = []
            for step in ("enqueue", "claim", "settle"):
                before = command_calls(client)
                if step == "enqueue":
                    await backend.enqueue([make_task() for _ in range(100)])
                elif step == "claim":
                    leases = await backend.claim(["default"], 100, lease_seconds=LEASE, worker_id="w")
                else:
                    await backend.settle([Settlement(lease, outcome.succeeded(lease.task, None)) for lease in leases])
                steps.append(delta(before, command_calls(client)))
            assert client.llen(Keys().wake("default")) <= 2  # one token per call, not one per task
    enqueue, claim, settle = steps
    per_task = {name: sum(step.get(name, 0) for step in steps) for name in ("hset", "hmget")}
    assert per_task == {"hset": 300, "hmget": 200}, steps
    assert all(calls < 100 for step in steps for name, calls in step.items() if name not in per_task), steps
    assert sum(enqueue.values()) <= 100 + 12 and sum(claim.values()) <= 200 + 12 and sum(settle.values()) <= 200 + 12


async def test_settle_and_claim_is_one_round_trip(redis_url: str, clock: LinkedClock, make_task: MakeTask) -> None:
    async with fresh_backend(redis_url, clock) as backend:
        await backend.enqueue([make_task() for _ in range(20)])
        leases = await backend.claim(["default"], 10, lease_seconds=LEASE, worker_id="w")
        with redis.Redis.from_url(redis_url) as client:
            before = script_calls(client)
            applied, more = await backend.settle_and_claim(
                [Settlement(lease, outcome.succeeded(lease.task, None)) for lease in leases], ["default"], 10,
                lease_seconds=LEASE, worker_id="w")
            assert script_calls(client) - before == 1
    assert applied == [True] * 10 and len(more) == 10


async def test_a_paused_queue_costs_a_claim_one_smembers_and_gets_no_wake_tokens(redis_url: str, clock: LinkedClock,
                                                                                   make_task: MakeTask) -> None:
    """The pause is read once per claim call, whatever the batch; a paused queue's submits wake nobody (a
    claimer could take nothing), and resume gives it the token an enqueue would have."""
    async with fresh_backend(redis_url, clock) as backend:
        with redis.Redis.from_url(redis_url, decode_responses=True) as client:
            await backend.enqueue([make_task() for _ in range(100)])
            await backend.pause("emails")
            before = command_calls(client)
            leases = await backend.claim(["default", "emails"], 100, lease_seconds=LEASE, worker_id="w")
            assert len(leases) == 100 and delta(before, command_calls(client)).get("smembers") == 1

            await backend.enqueue([make_task(queue="emails") for _ in range(3)])
            assert client.llen(Keys().wake("emails")) == 0
            assert "emails" in client.smembers(Keys().prefix + "queues")  # stats and backlog still see it
            await backend.resume("emails")
            assert client.llen(Keys().wake("emails")) == 1


# -- the submit coalescer: concurrent enqueues of a process share a call, each answered on its own -------
async def test_concurrent_submits_share_one_call_and_each_gets_its_own_task(redis_url: str, clock: LinkedClock,
                                                                           make_task: MakeTask) -> None:
    async with fresh_backend(redis_url, clock) as backend:
        await backend.ping()
        await backend.enqueue([make_task()])  # the function library is loaded, the pool warm
        tasks = [make_task(payload={"i": i}) for i in range(64)]
        with redis.Redis.from_url(redis_url) as client:
            before = script_calls(client)
            stored = await asyncio.gather(*(backend.enqueue([task]) for task in tasks))
            assert script_calls(client) - before == 1
        assert [[t.id for t in one] for one in stored] == [[t.id] for t in tasks]
        assert [await backend.get(t.id) for t in tasks] == [one[0] for one in stored]
        leases = await backend.claim(["default"], 100, lease_seconds=LEASE, worker_id="w")
        assert [lease.task.id for lease in leases][1:] == [t.id for t in tasks]  # FIFO in the order they came


async def test_a_refused_submit_fails_only_its_caller(backend: RedisBackend, make_task: MakeTask) -> None:
    await backend.enqueue([make_task(tenant="full"), make_task(payload={"a": 1}, idempotency_key="k")])
    fresh = [make_task(tenant="ok") for _ in range(3)]
    calls = [backend.enqueue([fresh[0]], cap=1),
             backend.enqueue([make_task(tenant="full")], cap=1),  # over the cap
             backend.enqueue([fresh[1], make_task(payload={"a": 2}, idempotency_key="k")], cap=1),  # a mismatch
             backend.enqueue([make_task(payload={"a": 1}, idempotency_key="k")], cap=1),  # a replay
             backend.enqueue([fresh[2]])]

    results = await asyncio.gather(*calls, return_exceptions=True)

    assert [type(r).__name__ for r in results] == ["list", "QueueFull", "IdempotencyMismatch", "list", "list"]
    assert (results[1].tenant, results[1].limit) == ("full", 1)  # type: ignore[union-attr]
    assert [t.id for t in results[0]] == [fresh[0].id]  # type: ignore[union-attr]
    assert results[3][0].idempotency_key == "k" and results[3][0].payload == {"a": 1}  # type: ignore[index]
    assert await backend.get(fresh[1].id) is None  # the refused request stored none of its tasks
    assert await backend.count_waiting("ok") == 2 and await backend.count_waiting("full") == 1


async def test_a_submit_with_a_bad_task_fails_alone(backend: RedisBackend, make_task: MakeTask) -> None:
    good = make_task()
    results = await asyncio.gather(backend.enqueue([make_task(queue="not a queue")]), backend.enqueue([good]),
                                   return_exceptions=True)

    assert isinstance(results[0], ValidationError)
    assert await backend.get(good.id) == results[1][0]  # type: ignore[index]


async def test_when_the_call_fails_every_submit_in_it_is_unavailable(make_task: MakeTask) -> None:
    backend = RedisBackend.from_url(f"redis://127.0.0.1:{free_port()}?socket_connect_timeout=0.5")
    results = await asyncio.gather(*(backend.enqueue([make_task()]) for _ in range(3)), return_exceptions=True)
    await backend.close()

    assert [type(r) for r in results] == [BackendUnavailable] * 3
    assert len({id(r) for r in results}) == 3  # each caller raises its own


# -- JSON that orjson alone would not round-trip ------------------------------------------------------
async def test_payloads_read_back_exactly(backend: RedisBackend, make_task: MakeTask) -> None:
    payload = {"big": 2**70 + 1, "negative": -(2**64) - 3, "float": 1e16, "zero": -0.0, "text": "é😀\u2028",
               "nested": [{"k": None}, [], {}], "lone": "\ud800"}
    task = make_task(payload=payload)
    await backend.enqueue([task])

    [lease] = await backend.claim(["default"], 1, lease_seconds=LEASE, worker_id="w")
    assert lease.task.payload == payload and type(lease.task.payload["big"]) is int
    await backend.settle([Settlement(lease, outcome.succeeded(lease.task, payload))])
    done = await backend.get(task.id)
    assert done is not None and done.result == payload and done.payload == payload


async def test_an_integer_just_below_64_bits_reads_back_as_an_integer(backend: RedisBackend,
                                                                       make_task: MakeTask) -> None:
    # 19 digits after a minus: orjson reads -(2**63) - 1 as a float; hexq must not.
    task = make_task(payload={"n": -(2**63) - 1, "m": -9_999_999_999_999_999_999})
    await backend.enqueue([task])
    stored = await backend.get(task.id)
    assert stored is not None and stored.payload == {"n": -(2**63) - 1, "m": -9_999_999_999_999_999_999}
    assert type(stored.payload["n"]) is int


# -- scripts as a function library (Redis 7), or EVALSHA (Redis 6.2, a cluster, a restricted user) --------
async def test_one_server_runs_the_function_library_and_reloads_it(redis_url: str, clock: LinkedClock,
                                                                   make_task: MakeTask) -> None:
    async with fresh_backend(redis_url, clock) as backend:
        with redis.Redis.from_url(redis_url, decode_responses=True) as client:
            await backend.enqueue([make_task()])
            client.function_flush()  # as a restart without persistence, or a failover, would
            before = command_calls(client)
            await backend.enqueue([make_task()])
            calls = delta(before, command_calls(client))
        assert await backend.backlog() == 2
    assert (calls.get("function|load"), calls.get("fcall"), calls.get("evalsha")) == (1, 2, None)  # refused, then ran


@contextmanager
def redis_without_functions(tmp_path: Path) -> Iterator[str]:
    """A server that answers FCALL and FUNCTION as Redis 6.2 does: unknown command."""
    port = free_port()
    with (tmp_path / "redis.log").open("wb") as log:
        process = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                    "--appendonly", "no", "--dir", str(tmp_path), "--rename-command", "FCALL", "",
                                    "--rename-command", "FUNCTION", ""], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: _pings(port), f"redis-server on {port}")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)


def _pings(port: int) -> bool:
    try:
        with redis.Redis(port=port, socket_connect_timeout=0.5) as client:
            return bool(client.ping())
    except redis.ConnectionError:
        return False


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server on PATH")
async def test_without_functions_the_scripts_run_by_evalsha(tmp_path: Path, clock: LinkedClock,
                                                            make_task: MakeTask) -> None:
    with redis_without_functions(tmp_path) as url:
        async with fresh_backend(url, clock) as backend:
            tasks = [make_task(), make_task(status=TaskStatus.SCHEDULED, run_at=clock.now() + 5)]
            assert await backend.enqueue(tasks) == [await backend.get(t.id) for t in tasks]
            [lease] = await backend.claim(["default"], 5, lease_seconds=LEASE, worker_id="w")
            assert await backend.settle_and_claim([Settlement(lease, outcome.succeeded(lease.task, 1))], ["default"],
                                                  5, lease_seconds=LEASE, worker_id="w") == ([True], [])
            clock.advance(5)
            assert await backend.promote_due(10) == 1
            assert (await backend.stats()).by_status[TaskStatus.QUEUED] == 1
            with redis.Redis.from_url(url) as client:
                stats = client.info("commandstats")
            assert stats["cmdstat_evalsha"]["calls"] >= 5


async def test_a_user_who_may_not_use_functions_runs_the_scripts(redis_url: str, clock: LinkedClock,
                                                                 make_task: MakeTask) -> None:
    with redis.Redis.from_url(redis_url) as admin:
        admin.acl_setuser("nofunctions", enabled=True, passwords=["+secret"], keys=["*"], channels=["*"],
                          commands=["+@all", "-fcall", "-function"])
        try:
            url = redis_url.replace("redis://", "redis://nofunctions:secret@")
            before = command_calls(admin)
            async with fresh_backend(url, clock) as backend:
                task = make_task()
                assert await backend.enqueue([task]) == [task]
                [lease] = await backend.claim(["default"], 1, lease_seconds=LEASE, worker_id="w")
                assert await backend.settle([Settlement(lease, outcome.succeeded(lease.task, 1))]) == [True]
                assert (await backend.stats()).by_status[TaskStatus.SUCCEEDED] == 1
            calls = delta(before, command_calls(admin))
            assert calls.get("evalsha", 0) >= 4 and "fcall" not in calls and "function|load" not in calls
        finally:
            admin.acl_deluser("nofunctions")


# -- a partition stored by hexq 0.1.0 ---------------------------------------------------------------
OLD_NOW = 1_700_000_000.0


def old_task(task_id: str, **fields: object) -> Task:
    base: dict[str, object] = {"id": task_id, "type": "echo", "payload": {"id": task_id}, "run_at": OLD_NOW,
                               "created_at": OLD_NOW}
    return Task(**(base | fields))  # type: ignore[arg-type]


def store_old_layout(client: redis.Redis, keys: Keys) -> dict[str, Task]:
    """What hexq 0.1.0's scripts stored for seven tasks (compared field by field with a partition its own code
    wrote): the task hashes (the codec JSON in `data`, every time in a field of its own), a sorted set per
    status, and scores in seconds. Returns the tasks as 0.1.0 read them back."""
    leased = {"started_at": OLD_NOW + 1, "worker_id": "w-old", "attempts": 1}
    finished = {"finished_at": OLD_NOW + 2}
    tasks = {
        "running": old_task("running", priority=Priority.CRITICAL, tenant="acme", status=TaskStatus.RUNNING, **leased),
        "succeeded": old_task("succeeded", priority=Priority.CRITICAL, status=TaskStatus.SUCCEEDED, result={"ok": 1},
                              **leased, **finished),
        "dead": old_task("dead", priority=Priority.CRITICAL, max_attempts=1, status=TaskStatus.DEAD, error="boom",
                         **leased, **finished),
        "queued": old_task("queued", priority=Priority.HIGH, idempotency_key="k1", tenant="acme"),
        "queued2": old_task("queued2"),
        "scheduled": old_task("scheduled", status=TaskStatus.SCHEDULED, run_at=OLD_NOW + 60, tenant="acme"),
        "cancelled": old_task("cancelled", status=TaskStatus.CANCELLED, **finished),
    }
    for seq, task in enumerate(tasks.values(), start=1):
        written = task if task.status is not TaskStatus.RUNNING else replace(
            task, status=TaskStatus.QUEUED, attempts=0, started_at=None, worker_id=None)  # data as enqueued
        fields: dict[str, object] = {
            "data": json.dumps(task_to_dict(replace(written, finished_at=None)), separators=(",", ":")),
            "status": task.status.value, "attempts": task.attempts, "queue": task.queue,
            "priority": int(task.priority), "type": task.type, "tenant": task.tenant, "seq": seq,
            "fp": idempotency.fingerprint(task), "created_at": repr(task.created_at), "run_at": repr(task.run_at)}
        if task.finished_at is not None:
            fields["finished_at"] = repr(task.finished_at)
        if task.status is TaskStatus.RUNNING:
            fields |= {"token": 1, "expires": repr(OLD_NOW + 31), "started_at": repr(OLD_NOW + 1),
                       "worker_id": "w-old", "cancel": "1"}
        if task.idempotency_key:
            fields["idem"] = json.dumps([task.tenant, task.idempotency_key], separators=(",", ":"))
            client.hset(keys.prefix + "idem", fields["idem"], task.id)  # type: ignore[arg-type]
        client.hset(keys.task(task.id), mapping=fields)  # type: ignore[arg-type]
        client.zadd(keys.prefix + "all", {task.id: seq})
        client.zadd(keys.status(task.status.value), {task.id: seq})
    client.zadd(keys.ready("default"), {"queued": 2 * 2**40 + 4, "queued2": 2 * 2**40 + 5})
    client.zadd(keys.prefix + "delayed", {"scheduled": OLD_NOW + 60})
    client.zadd(keys.prefix + "leases", {"running": OLD_NOW + 31})
    client.zadd(keys.prefix + "finished", {"succeeded": OLD_NOW + 2, "cancelled": OLD_NOW + 2})
    client.sadd(keys.prefix + "queues", "default")
    client.hset(keys.waiting, mapping={"acme": 2, "default": 1})
    client.lpush(keys.wake("default"), *["1"] * 7)
    client.set(keys.prefix + "seq", 7)
    client.set(keys.prefix + "token", 3)
    return tasks


@asynccontextmanager
async def backend_on(url: str, clock: LinkedClock) -> AsyncIterator[RedisBackend]:
    """A backend in test-clock mode on the data already there (fresh_backend flushes first)."""
    client = sync_client(url)
    key = Keys().test_clock
    client.set(key, repr(clock.now()))
    clock.links.append(lambda now: client.set(key, repr(now)))
    backend = RedisBackend.from_url(url, test_clock=True)
    try:
        yield backend
    finally:
        await backend.close()
        flush(client)
        client.close()


async def test_a_partition_stored_by_hexq_0_1_is_read_and_worked_as_it_is(redis_url: str, make_task: MakeTask,
                                                                          clock: LinkedClock) -> None:
    keys = Keys()
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        flush(client)
        old = store_old_layout(client, keys)
    clock.advance(OLD_NOW + 10 - clock.now())  # 10 s after 0.1.0 stored them
    async with backend_on(redis_url, clock) as backend:
        assert [await backend.get(task_id) for task_id in old] == list(old.values())
        stats = await backend.stats()
        assert stats.by_status == {TaskStatus.QUEUED: 2, TaskStatus.SCHEDULED: 1, TaskStatus.RUNNING: 1,
                                   TaskStatus.SUCCEEDED: 1, TaskStatus.FAILED: 0, TaskStatus.DEAD: 1,
                                   TaskStatus.CANCELLED: 1}
        assert [t.id for t in (await backend.query(TaskQuery(status=TaskStatus.QUEUED))).items] == ["queued2", "queued"]
        assert [t.id for t in (await backend.query(TaskQuery(status=TaskStatus.DEAD))).items] == ["dead"]
        assert await backend.count_waiting("acme") == 2
        # The key names the task 0.1.0 stored; its running lease still holds, its cancel mark too.
        assert await backend.enqueue([make_task(payload={"id": "queued"}, idempotency_key="k1", tenant="acme",
                                                priority=Priority.HIGH)]) == [old["queued"]]
        assert await backend.reclaim_expired(10, LEASE) == []  # expiry 0.1.0 wrote in seconds, not due yet
        running = Lease(old["running"], 1, OLD_NOW + 31)
        [renewed] = await backend.extend([running], LEASE)
        assert renewed is not None and renewed.cancel_requested
        assert await backend.promote_due(10) == 0  # due at +60 s, in seconds too
        leases = await backend.claim(["default"], 5, lease_seconds=LEASE, worker_id="w-new")
        assert [lease.task.id for lease in leases] == ["queued", "queued2"]
        applied = await backend.settle([Settlement(lease, outcome.succeeded(lease.task, "new"))
                                        for lease in [running, *leases]])
        assert applied == [True, True, True]
        clock.advance(55)
        assert await backend.promote_due(10) == 1
        assert await backend.purge_finished(older_than=60, limit=10) == 2  # the two 0.1.0 finished 63 s ago
        with redis.Redis.from_url(redis_url, decode_responses=True) as client:
            assert client.exists(*(keys.status(s) for s in ("queued", "running", "succeeded"))) == 0  # dropped
        assert (await backend.stats()).by_status[TaskStatus.SUCCEEDED] == 3


# -- fair queues ------------------------------------------------------------------------------------
async def test_a_task_queued_before_fair_queues_is_served_first_and_gets_a_turn_when_requeued(
        url: str, backend: RedisBackend, make_task: MakeTask) -> None:
    keys = Keys()
    old, new = make_task(tenant="a"), make_task(tenant="b")
    await backend.enqueue([old])
    with sync_client(url) as client:  # as hexq without fair queues left it: scored by seq, no turn
        seq = int(client.hget(keys.task(old.id), "seq"))
        client.hdel(keys.task(old.id), "turn")
        client.zadd(keys.ready("default"), {old.id: 2 * 2**40 + seq})
        client.delete(keys.turns("default"))
        await backend.enqueue([new])

        [lease] = await backend.claim(["default"], 1, lease_seconds=30, worker_id="w")
        assert lease.task.id == old.id
        assert await backend.settle([Settlement(lease, outcome.released(lease.task))]) == [True]

        assert client.hget(keys.task(old.id), "turn") is not None  # a new turn, kept from now on
        assert set(client.zrange(keys.turns("default"), 0, -1)) == {"1", "1|a", "1|b"}


async def test_a_tenant_alone_keeps_one_member_per_level_in_the_turns_set(url: str, backend: RedisBackend,
                                                                          make_task: MakeTask) -> None:
    await backend.enqueue([make_task(tenant="solo") for _ in range(50)])
    while await backend.claim(["default"], 7, lease_seconds=30, worker_id="w"):
        pass

    with sync_client(url) as client:
        turns = dict(client.zrange(Keys().turns("default"), 0, -1, withscores=True))
    assert set(turns) == {"1", "1|solo"}
    assert turns["1"] == turns["1|solo"]  # the clock is at the last turn claimed: the tenant's last one

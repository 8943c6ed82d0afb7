"""SQLite specifics: WAL, schema creation by several instances, concurrent claimers on one file
(threads and another process), lock timeouts as BackendUnavailable, polling across connections,
settle-and-claim in one transaction, batched enqueues with their own answers, the event loop never
blocked by a held lock, checkpoints, files made by older versions, and the JSON codec."""

from __future__ import annotations

import asyncio
import json
import math
import sqlite3
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hexq.adapters.sqlite import SQLiteBackend, broker, codec, connection, operations
from hexq.adapters.sqlite.connection import INLINE
from hexq.adapters.sqlite.schema import ADDED_COLUMNS, INDEXES
from hexq.core import outcome
from hexq.core.clock import FakeClock, stamped
from hexq.core.errors import BackendUnavailable, IdempotencyMismatch, QueueFull
from hexq.core.model import Settlement, Stats, Task, TaskQuery, TaskStatus
from hexq.core.ports import Clock, SettleAndClaim

MakeTask = Callable[..., Task]
TASKS = 200

CHILD = """
import asyncio, json, sys
from hexq.adapters.sqlite import SQLiteBackend

async def main(path):
    backend = SQLiteBackend(path)
    await backend.ping()
    print("ready", flush=True)
    sys.stdin.readline()
    claimed = []
    while leases := await backend.claim(["default"], 1, lease_seconds=300, worker_id="child"):
        claimed += [[lease.task.id, lease.token] for lease in leases]
    await backend.close()
    print(json.dumps(claimed), flush=True)

asyncio.run(main(sys.argv[1]))
"""


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "hexq.db")


async def drain(backend: SQLiteBackend, n: int, worker_id: str) -> list[tuple[str, int]]:
    claimed: list[tuple[str, int]] = []
    while leases := await backend.claim(["default"], n, lease_seconds=300, worker_id=worker_id):
        claimed += [(lease.task.id, lease.token) for lease in leases]
    return claimed


def assert_each_claimed_once(claims: list[tuple[str, int]], tasks: list[Task]) -> None:
    ids = [task_id for task_id, _ in claims]
    assert len(ids) == len(set(ids)), "a task was claimed twice"
    assert set(ids) == {t.id for t in tasks}
    tokens = [token for _, token in claims]
    assert len(tokens) == len(set(tokens)), "a fencing token was handed out twice"


async def test_the_database_is_in_wal_mode(db: str) -> None:
    backend = SQLiteBackend(db)
    await backend.ping()
    await backend.close()

    with sqlite3.connect(db) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    raw.close()


async def test_schema_creation_is_idempotent_across_instances(db: str, make_task: MakeTask) -> None:
    first, second = SQLiteBackend(db), SQLiteBackend(db)
    await asyncio.gather(first.ping(), second.ping())  # both create the schema on a fresh file at once
    [task] = await first.enqueue([make_task()])

    third = SQLiteBackend(db)
    assert await third.get(task.id) == task
    assert await second.get(task.id) == task
    for backend in (first, second, third):
        await backend.close()


async def test_two_connections_never_claim_a_task_twice(db: str, make_task: MakeTask, clock: FakeClock) -> None:
    first, second = SQLiteBackend(db, clock), SQLiteBackend(db, clock)
    tasks = [make_task() for _ in range(TASKS)]
    await first.enqueue(tasks)

    claims = await asyncio.gather(drain(first, 2, "a"), drain(second, 1, "b"), drain(second, 3, "c"))

    assert_each_claimed_once([c for part in claims for c in part], tasks)
    page = await first.query(TaskQuery(status=TaskStatus.RUNNING, limit=500))
    assert len(page.items) == TASKS
    assert {t.attempts for t in page.items} == {1}
    await first.close()
    await second.close()


@pytest.mark.slow
async def test_another_process_never_claims_the_same_task(db: str, make_task: MakeTask, clock: FakeClock) -> None:
    here = SQLiteBackend(db, clock)
    tasks = [make_task() for _ in range(TASKS)]
    await here.enqueue(tasks)
    child = await asyncio.create_subprocess_exec(sys.executable, "-c", CHILD, db, stdin=asyncio.subprocess.PIPE,
                                                 stdout=asyncio.subprocess.PIPE)
    assert child.stdout is not None
    assert await child.stdout.readline() == b"ready\n"

    (out, _), mine = await asyncio.gather(child.communicate(b"go\n"), drain(here, 1, "parent"))

    assert child.returncode == 0
    theirs = [(task_id, token) for task_id, token in json.loads(out)]
    assert_each_claimed_once(mine + theirs, tasks)
    await here.close()


async def test_a_held_lock_past_the_busy_timeout_is_backend_unavailable(db: str, make_task: MakeTask) -> None:
    backend = SQLiteBackend(db, busy_timeout=0.05)
    await backend.enqueue([make_task()])
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(BackendUnavailable) as caught:
            await backend.claim(["default"], 1, lease_seconds=30, worker_id="w")
        assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
        assert caught.value.backend == "sqlite"
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()

    assert len(await backend.claim(["default"], 1, lease_seconds=30, worker_id="w")) == 1  # and recovers
    await backend.close()


async def test_an_unopenable_file_is_backend_unavailable(tmp_path: Path) -> None:
    backend = SQLiteBackend(str(tmp_path / "missing-dir" / "hexq.db"))

    with pytest.raises(BackendUnavailable):
        await backend.ping()


async def test_a_waiting_claim_sees_a_task_another_connection_enqueues(db: str, make_task: MakeTask,
                                                                        clock: FakeClock) -> None:
    # No in-process wakeup crosses backend objects, so this exercises the poll (as another process would).
    producer, consumer = SQLiteBackend(db, clock), SQLiteBackend(db, clock)
    await consumer.ping()
    task = make_task()

    async def enqueue_later() -> None:
        await asyncio.sleep(0.05)
        await producer.enqueue([task])

    enqueue = asyncio.create_task(enqueue_later())
    leases = await consumer.claim(["default"], 1, lease_seconds=30, worker_id="w", wait=5.0)
    await enqueue

    assert [lease.task.id for lease in leases] == [task.id]
    await producer.close()
    await consumer.close()


async def test_close_then_use_reopens(db: str, make_task: MakeTask) -> None:
    backend = SQLiteBackend(db)
    [task] = await backend.enqueue([make_task()])
    await backend.close()

    assert await backend.get(task.id) == task
    await backend.close()


# -- SettleAndClaim: one write transaction ------------------------------------------------------------------
async def test_settle_and_claim_is_an_optional_port_it_has(db: str) -> None:
    assert isinstance(SQLiteBackend(db), SettleAndClaim)


async def test_settle_and_claim_settles_then_leases_the_next_under_fresh_tokens(db: str, make_task: MakeTask,
                                                                                clock: FakeClock) -> None:
    backend = SQLiteBackend(db, clock)
    tasks = [make_task() for _ in range(3)]
    await backend.enqueue(tasks)
    (first,) = await backend.claim(["default"], 1, lease_seconds=30, worker_id="w")

    applied, leases = await backend.settle_and_claim([Settlement(first, outcome.succeeded(first.task, {"ok": 1}))],
                                                     ["default"], 5, lease_seconds=30, worker_id="w")

    assert applied == [True]
    assert [lease.task.id for lease in leases] == [t.id for t in tasks[1:]]
    assert len({first.token, *(lease.token for lease in leases)}) == 3
    done = await backend.get(first.task.id)
    assert done is not None and (done.status, done.result, done.finished_at) == ("succeeded", {"ok": 1}, clock.now())
    await backend.close()


async def test_settle_and_claim_sees_what_its_own_settles_released(db: str, make_task: MakeTask) -> None:
    backend = SQLiteBackend(db)
    [task] = await backend.enqueue([make_task()])
    (lease,) = await backend.claim(["default"], 1, lease_seconds=30, worker_id="w")

    applied, leases = await backend.settle_and_claim([Settlement(lease, outcome.released(lease.task))], ["default"], 1,
                                                     lease_seconds=30, worker_id="w")

    assert applied == [True]
    assert [(again.task.id, again.task.attempts) for again in leases] == [(task.id, 2)]
    assert leases[0].token > lease.token
    await backend.close()


async def test_settle_and_claim_answers_a_stale_settlement_and_still_claims(db: str, make_task: MakeTask,
                                                                           clock: FakeClock) -> None:
    backend = SQLiteBackend(db, clock)
    await backend.enqueue([make_task(), make_task()])
    (lost,) = await backend.claim(["default"], 1, lease_seconds=1, worker_id="w")
    clock.advance(2)
    (taken_over,) = await backend.reclaim_expired(10, 30)

    applied, leases = await backend.settle_and_claim([Settlement(lost, outcome.succeeded(lost.task, None))],
                                                     ["default"], 1, lease_seconds=30, worker_id="w")

    assert applied == [False]
    assert len(leases) == 1 and leases[0].task.id != lost.task.id
    still = await backend.get(lost.task.id)
    assert still is not None and still.status == "running"  # the reclaimer's lease stands
    assert (await backend.settle([Settlement(taken_over, outcome.succeeded(taken_over.task, None))])) == [True]
    await backend.close()


async def test_settle_and_claim_is_one_transaction_so_a_held_lock_fails_both(db: str, make_task: MakeTask) -> None:
    backend = SQLiteBackend(db, busy_timeout=0.05)
    await backend.enqueue([make_task(), make_task()])
    (lease,) = await backend.claim(["default"], 1, lease_seconds=30, worker_id="w")
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(BackendUnavailable):
            await backend.settle_and_claim([Settlement(lease, outcome.succeeded(lease.task, None))], ["default"], 1,
                                           lease_seconds=30, worker_id="w")
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()

    still = await backend.get(lease.task.id)
    assert still is not None and still.status == "running"
    assert len((await backend.query(TaskQuery(status=TaskStatus.QUEUED))).items) == 1  # nor the other claimed
    await backend.close()


async def test_settle_and_claim_with_nothing_to_settle_or_claim_writes_nothing(db: str) -> None:
    backend = SQLiteBackend(db)
    assert await backend.settle_and_claim([], ["default"], 0, lease_seconds=30, worker_id="w") == ([], [])
    assert await backend.settle_and_claim([], ["default"], 3, lease_seconds=30, worker_id="w") == ([], [])
    await backend.close()


# -- enqueues of one event-loop turn share a transaction, each with its own answer ----------------------------
@pytest.fixture
def transactions(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many enqueue calls each enqueue transaction carried."""
    sizes: list[int] = []
    real = broker.enqueue

    def counting(conn: sqlite3.Connection, clock: Clock, requests: Sequence[broker.Request],
                 weights: Mapping[str, int]) -> list[broker.Outcome]:
        sizes.append(len(requests))
        return real(conn, clock, requests, weights)

    monkeypatch.setattr(broker, "enqueue", counting)
    return sizes


async def test_concurrent_enqueues_go_as_one_transaction_each_answered_in_order(
        db: str, make_task: MakeTask, transactions: list[int]) -> None:
    backend = SQLiteBackend(db)
    await backend.ping()
    calls = [[make_task() for _ in range(k)] for k in (1, 3, 1, 2)]

    stored = await asyncio.gather(*(backend.enqueue(tasks) for tasks in calls))

    assert [[t.id for t in answer] for answer in stored] == [[t.id for t in tasks] for tasks in calls]
    assert transactions == [4]
    page = await backend.query(TaskQuery(limit=20))
    assert len(page.items) == 7
    await backend.close()


async def test_one_tenant_over_its_cap_fails_only_its_own_call(db: str, make_task: MakeTask,
                                                               transactions: list[int]) -> None:
    backend = SQLiteBackend(db)
    await backend.enqueue([make_task(tenant="acme")], cap=1)

    over, fine, also = await asyncio.gather(backend.enqueue([make_task(tenant="acme")], cap=1),
                                            backend.enqueue([make_task(tenant="globex")], cap=1),
                                            backend.enqueue([make_task(tenant="initech")], cap=1),
                                            return_exceptions=True)

    assert isinstance(over, QueueFull) and over.tenant == "acme"
    assert isinstance(fine, list) and isinstance(also, list)
    assert transactions[-1] == 3
    assert [await backend.count_waiting(t) for t in ("acme", "globex", "initech")] == [1, 1, 1]
    await backend.close()


async def test_an_idempotency_mismatch_fails_only_its_call_and_later_calls_see_earlier_ones(
        db: str, make_task: MakeTask, transactions: list[int]) -> None:
    backend = SQLiteBackend(db)
    await backend.ping()
    first = make_task(idempotency_key="k", payload={"n": 1})

    stored, same, other = await asyncio.gather(
        backend.enqueue([first]), backend.enqueue([make_task(idempotency_key="k", payload={"n": 1})]),
        backend.enqueue([make_task(idempotency_key="k", payload={"n": 2}), make_task()]), return_exceptions=True)

    assert isinstance(stored, list) and isinstance(same, list)
    assert [t.id for t in same] == [t.id for t in stored] == [first.id]  # the same request answered by the first
    assert isinstance(other, IdempotencyMismatch)
    assert transactions == [3]
    assert len((await backend.query(TaskQuery(limit=20))).items) == 1  # the mismatching call stored nothing
    await backend.close()


async def test_a_call_cancelled_while_it_gathers_does_not_lose_the_others(db: str, make_task: MakeTask,
                                                                        transactions: list[int]) -> None:
    backend = SQLiteBackend(db)
    await backend.ping()
    mine, theirs = make_task(), [make_task(), make_task()]
    leader = asyncio.create_task(backend.enqueue([mine]))
    others = [asyncio.create_task(backend.enqueue([task])) for task in theirs]
    await asyncio.sleep(0)  # all three have called: the first gathers this turn's calls, the others joined it
    leader.cancel()

    stored = await asyncio.gather(*others)

    assert [[t.id for t in answer] for answer in stored] == [[t.id] for t in theirs]
    assert transactions == [2]
    assert leader.cancelled() and await backend.get(mine.id) is None
    await backend.close()


async def test_a_payload_json_cannot_hold_fails_only_its_own_call(db: str, make_task: MakeTask) -> None:
    backend = SQLiteBackend(db)
    await backend.ping()

    bad, good = await asyncio.gather(backend.enqueue([make_task(payload={"when": {1, 2}})]),
                                     backend.enqueue([make_task()]), return_exceptions=True)

    assert isinstance(bad, TypeError)
    assert isinstance(good, list) and await backend.get(good[0].id) == good[0]
    await backend.close()


async def test_a_failing_file_fails_every_call_of_the_batch(db: str, make_task: MakeTask) -> None:
    backend = SQLiteBackend(db, busy_timeout=0.05)
    await backend.ping()
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        answers = await asyncio.gather(*(backend.enqueue([make_task()]) for _ in range(3)), return_exceptions=True)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()

    assert all(isinstance(answer, BackendUnavailable) for answer in answers)
    assert (await backend.query(TaskQuery(limit=20))).items == []
    await backend.close()


async def test_a_held_lock_never_blocks_the_event_loop(db: str, make_task: MakeTask) -> None:
    backend = SQLiteBackend(db)
    await backend.ping()
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    enqueue = asyncio.create_task(backend.enqueue([make_task()]))
    await asyncio.sleep(0.3)
    assert not enqueue.done() and ticks >= 10  # waiting for the lock, and the loop kept running
    blocker.execute("ROLLBACK")
    blocker.close()
    assert len(await asyncio.wait_for(enqueue, 5)) == 1
    ticker.cancel()
    await backend.close()


# -- the file: durability settings, checkpoints, older files ------------------------------------------------
async def test_durability_is_wal_with_synchronous_normal(db: str) -> None:
    """Survives an application crash (a commit is in the WAL when it returns), not a power loss: the README's
    promise. A change here must be a decision, not an accident."""
    backend = SQLiteBackend(db)

    def pragmas(conn: sqlite3.Connection) -> tuple[str, int]:
        return conn.execute("PRAGMA journal_mode").fetchone()[0], conn.execute("PRAGMA synchronous").fetchone()[0]

    await backend.ping()
    assert await backend._db.run(INLINE, pragmas) == ("wal", 1)  # 1: NORMAL
    await backend.close()


async def test_the_wal_is_checkpointed_without_any_commit_waiting_for_it(db: str, make_task: MakeTask) -> None:
    backend = SQLiteBackend(db)
    for _ in range(30):
        await backend.enqueue([make_task(payload={"pad": "x" * 500}) for _ in range(200)])  # ~3 MB of rows, more WAL

    def checkpointed() -> bool:  # pages reach the database file only by a checkpoint
        return Path(db).stat().st_size > 2_000_000

    for _ in range(100):
        if checkpointed():
            break
        await asyncio.sleep(0.05)
    assert checkpointed()
    await backend.close()


OLD_SCHEMA = """
CREATE TABLE tasks (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, type TEXT NOT NULL, payload TEXT NOT NULL,
    queue TEXT NOT NULL, priority INTEGER NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL, timeout REAL NOT NULL, run_at REAL NOT NULL, created_at REAL NOT NULL,
    started_at REAL, finished_at REAL, worker_id TEXT, result TEXT, error TEXT, idempotency_key TEXT,
    tenant TEXT NOT NULL, lease_token INTEGER, lease_expires REAL);
CREATE INDEX tasks_claim ON tasks (status, queue, priority DESC, seq);
CREATE INDEX tasks_due ON tasks (status, run_at);
CREATE INDEX tasks_leases ON tasks (status, lease_expires);
CREATE INDEX tasks_finished ON tasks (status, finished_at);
CREATE INDEX tasks_listing ON tasks (status, seq);
CREATE INDEX tasks_tenant ON tasks (tenant, status);
CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO counters VALUES ('lease_token', 7);
INSERT INTO tasks (id, type, payload, queue, priority, status, attempts, max_attempts, timeout, run_at, created_at,
                   tenant) VALUES ('old', 'echo', '{"n":1}', 'default', 1, 'queued', 0, 3, 30.0, 0.0, 1.0, 'default');
"""


async def test_a_file_from_the_first_release_gains_columns_and_indexes_and_keeps_its_tasks(db: str) -> None:
    with sqlite3.connect(db) as old:
        old.executescript(OLD_SCHEMA)
    old.close()
    backend = SQLiteBackend(db)

    (lease,) = await backend.claim(["default"], 1, lease_seconds=30, worker_id="w")
    assert (lease.task.id, lease.task.payload, lease.task.delay, lease.token) == ("old", {"n": 1}, 0.0, 8)
    assert await backend.settle([Settlement(lease, outcome.succeeded(lease.task, None))]) == [True]
    await backend.close()

    with sqlite3.connect(db) as raw:
        indexes = {name for (name,) in raw.execute("SELECT name FROM sqlite_master WHERE type = 'index'"
                                                   " AND name NOT LIKE 'sqlite_%'")}
        columns = {row[1] for row in raw.execute("PRAGMA table_info(tasks)")}
    raw.close()
    assert indexes == {statement.split(" ON ")[0].split()[-1] for statement in INDEXES}
    assert set(ADDED_COLUMNS) <= columns


async def test_tasks_queued_before_fair_queues_are_served_before_those_queued_since(db: str,
                                                                                    make_task: MakeTask) -> None:
    with sqlite3.connect(db) as old:
        old.executescript(OLD_SCHEMA)
    old.close()
    backend = SQLiteBackend(db)
    new = [make_task(tenant=tenant) for tenant in ("default", "other", "default")]
    await backend.enqueue(new)

    claimed = [lease.task.id for lease in await backend.claim(["default"], 10, lease_seconds=30, worker_id="w")]
    await backend.close()

    assert claimed[0] == "old"  # no turn (NULL) sorts first: the order it had before the upgrade
    assert sorted(claimed[1:]) == sorted(task.id for task in new)


# -- the codec and the clock rule, mirrored -------------------------------------------------------------
@pytest.mark.parametrize("value", [
    {}, {"n": 1, "s": "é", "l": [1.5, None, True]}, {"big": 10**30, "neg": -(2**63) - 1, "edge": 2**63},
    {"nan": math.nan, "inf": [math.inf, -math.inf]}, {"lone": "\ud800"}, {"1": {"2": "x" * 1000}},
    {"deep": json.loads("[" * 300 + "]" * 300)}, [1, "two", 3.0], "text", 1e16, -0.0, None])
def test_stored_json_reads_back_as_the_standard_library_would(value: object) -> None:
    expected = json.loads(json.dumps(value))
    got = codec.loads(codec.dumps(value))
    assert repr(got) == repr(expected)  # repr: NaN is not equal to itself, -0.0 == 0.0, 1 == 1.0
    assert repr(codec.loads(json.dumps(value))) == repr(expected)  # text an older version wrote


def test_unjsonable_values_are_refused_as_the_standard_library_refuses_them() -> None:
    for value in ({"when": datetime.now(UTC)}, {"set": {1, 2}}, {(1, 2): "tuple key"}):
        with pytest.raises(TypeError):
            codec.dumps(value)


@pytest.mark.parametrize("status", list(TaskStatus))
@pytest.mark.parametrize(("run_at", "delay", "finished_at"), [(0.0, 0.0, None), (2e9, 0.0, 5.0), (0.0, 30.0, None)])
def test_settled_times_follow_the_clock_rule(status: TaskStatus, run_at: float, delay: float,
                                             finished_at: float | None) -> None:
    task = Task(id="t", type="echo", payload={}, status=status, run_at=run_at, delay=delay, finished_at=finished_at)
    reference = stamped(task, 1_700_000_000.0)
    assert broker.stamped_times(task, 1_700_000_000.0) == (reference.run_at, reference.finished_at)


async def test_a_long_read_on_the_thread_does_not_hold_up_a_write(db: str, make_task: MakeTask,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    backend = SQLiteBackend(db)
    await backend.ping()
    slow_stats = operations.stats

    def stats(conn: sqlite3.Connection, clock: Clock) -> Stats:
        time.sleep(0.5)  # as a count over a million tasks would
        return slow_stats(conn, clock)

    monkeypatch.setattr(operations, "stats", stats)
    reading = asyncio.create_task(backend.stats())
    await asyncio.sleep(0.05)
    started = time.monotonic()
    [task] = await backend.enqueue([make_task()])
    assert time.monotonic() - started < 0.25 and not reading.done()
    assert (await reading).by_status[TaskStatus.QUEUED] == 1
    assert await backend.get(task.id) == task
    await backend.close()


async def test_close_closes_the_file_even_after_the_thread_went_idle(db: str, make_task: MakeTask,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connection, "_IDLE_EXIT", 0.05)
    backend = SQLiteBackend(db)
    await backend.enqueue([make_task()])
    assert (await backend.stats()).by_status[TaskStatus.QUEUED] == 1  # the thread and its connection
    await asyncio.sleep(0.3)  # the thread ends; the backend's connection stays open

    await backend.close()

    assert not await asyncio.to_thread(Path(db + "-wal").exists)  # removed when the file's last connection closes


async def test_sweeps_go_in_short_transactions_and_keep_to_their_limit(db: str, make_task: MakeTask,
                                                                        clock: FakeClock) -> None:
    backend = SQLiteBackend(db, clock)
    await backend.enqueue([make_task(status=TaskStatus.SCHEDULED, delay=1.0) for _ in range(450)])
    clock.advance(2)

    assert await backend.promote_due(430) == 430  # 200 + 200 + 30
    assert await backend.promote_due(1000) == 20
    leases = await backend.claim(["default"], 450, lease_seconds=30, worker_id="w")
    assert await backend.settle([Settlement(lease, outcome.succeeded(lease.task, None)) for lease in leases]) == (
        [True] * 450)
    clock.advance(10)
    assert await backend.purge_finished(5, 400) == 400
    assert await backend.purge_finished(5, 400) == 50
    await backend.close()

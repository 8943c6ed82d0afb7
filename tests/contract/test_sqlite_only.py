"""SQLite specifics: WAL, schema creation by several instances, concurrent claimers on one file
(threads and another process), lock timeouts as BackendUnavailable, and polling across connections."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from hexq.adapters.sqlite import SQLiteBackend
from hexq.core.clock import FakeClock
from hexq.core.errors import BackendUnavailable
from hexq.core.model import Task, TaskQuery, TaskStatus

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

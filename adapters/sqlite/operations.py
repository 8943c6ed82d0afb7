"""The backend's operations as plain blocking functions over one connection.

Each read-modify-write runs in one BEGIN IMMEDIATE transaction, which is what makes them atomic
across threads and processes. Time is read from the injected clock inside the transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from hexq.adapters.sqlite.rows import (
    INSERT_TASK,
    PUT_SCHEDULE,
    SELECT_LEASED,
    SELECT_SCHEDULES,
    SELECT_TASKS,
    UPDATE_TASK,
    schedule_from_row,
    schedule_values,
    task_from_row,
    task_values,
)
from hexq.adapters.sqlite.schema import transaction
from hexq.core import idempotency, quota
from hexq.core.clock import stamped
from hexq.core.model import Lease, Page, Priority, Settlement, Stats, Task, TaskQuery, TaskStatus
from hexq.core.ports import Clock
from hexq.core.ratelimit import Bucket, take
from hexq.core.schedule import Schedule

_MAX_CURSOR_DIGITS = 18  # fits a signed 64-bit integer


# -- Broker ---------------------------------------------------------------------------------
def enqueue(conn: sqlite3.Connection, clock: Clock, tasks: Sequence[Task], cap: int) -> list[Task]:
    with transaction(conn):  # the count and the inserts in one write transaction: no overshoot
        idempotency.check(tasks, lambda task: _earlier(conn, task))
        if cap:
            quota.check(tasks, cap, lambda task: _known(conn, task), lambda tenant: count_waiting(conn, tenant))
        now = clock.now()
        return [_add(conn, task, now) for task in tasks]


def _add(conn: sqlite3.Connection, task: Task, now: float) -> Task:
    stored = _earlier(conn, task)
    if stored is not None:
        return stored
    task = stamped(task, now, new=True)
    conn.execute(INSERT_TASK, task_values(task))
    return task


def _earlier(conn: sqlite3.Connection, task: Task) -> Task | None:
    """The task stored under `task`'s (tenant, idempotency key), if it has one."""
    if task.idempotency_key is None:
        return None
    row = conn.execute(f"{SELECT_TASKS} WHERE tenant = ? AND idempotency_key = ?",
                       (task.tenant, task.idempotency_key)).fetchone()
    return None if row is None else task_from_row(row)


def claim(conn: sqlite3.Connection, clock: Clock, queues: Sequence[str], n: int, lease_seconds: float,
          worker_id: str) -> list[Lease]:
    with transaction(conn):
        now = clock.now()
        _promote(conn, now, -1)  # LIMIT -1: no limit, as the memory backend promotes everything due
        rows = _next_queued(conn, queues, max(n, 0))
        tokens = _next_tokens(conn, len(rows))
        expires = now + lease_seconds
        leases = [Lease(_started(row, now, worker_id), token, expires) for row, token in zip(rows, tokens, strict=True)]
        conn.executemany("UPDATE tasks SET status = 'running', attempts = ?, started_at = ?, worker_id = ?,"
                         " lease_token = ?, lease_expires = ? WHERE id = ?",
                         [(lease.task.attempts, now, worker_id, lease.token, expires, lease.task.id)
                          for lease in leases])
    return leases


def _next_queued(conn: sqlite3.Connection, queues: Sequence[str], n: int) -> list[sqlite3.Row]:
    """The first `n` queued tasks across `queues` by priority, then age. One indexed query per queue and
    a merge: a single `queue IN (...)` query would sort every queued task of those queues."""
    rows: list[sqlite3.Row] = []
    for queue in dict.fromkeys(queues):
        rows += conn.execute(f"{SELECT_TASKS} WHERE status = 'queued' AND queue = ? ORDER BY priority DESC, seq"
                             " LIMIT ?", (queue, n)).fetchall()
    return sorted(rows, key=lambda row: (-row["priority"], row["seq"]))[:n]


def _started(row: sqlite3.Row, now: float, worker_id: str) -> Task:
    task = task_from_row(row)
    return task.moved_to(TaskStatus.RUNNING, attempts=task.attempts + 1, started_at=now, worker_id=worker_id)


def extend(conn: sqlite3.Connection, clock: Clock, leases: Sequence[Lease], lease_seconds: float) -> list[Lease | None]:
    with transaction(conn):
        expires = clock.now() + lease_seconds
        return [_touch(conn, lease, expires) for lease in leases]


def _touch(conn: sqlite3.Connection, lease: Lease, expires: float) -> Lease | None:
    row = conn.execute("UPDATE tasks SET lease_expires = ? WHERE id = ? AND status = 'running' AND lease_token = ?"
                       " RETURNING cancel_requested", (expires, lease.task.id, lease.token)).fetchone()
    return None if row is None else Lease(lease.task, lease.token, expires, bool(row[0]))


def settle(conn: sqlite3.Connection, clock: Clock, settlements: Sequence[Settlement]) -> list[bool]:
    with transaction(conn):
        now = clock.now()
        return [_settle(conn, s, now) for s in settlements]


def _settle(conn: sqlite3.Connection, settlement: Settlement, now: float) -> bool:
    task = stamped(settlement.task, now)
    cursor = conn.execute(f"{UPDATE_TASK} WHERE id = ? AND status = 'running' AND lease_token = ?",
                          (*task_values(task)[1:], task.id, settlement.lease.token))
    return cursor.rowcount == 1


def _next_tokens(conn: sqlite3.Connection, count: int) -> range:
    """Reserve `count` fencing tokens (the caller holds the write lock)."""
    if count == 0:
        return range(0)
    conn.execute("UPDATE counters SET value = value + ? WHERE name = 'lease_token'", (count,))
    (last,) = conn.execute("SELECT value FROM counters WHERE name = 'lease_token'").fetchone()
    return range(last - count + 1, last + 1)


# -- Sweeper --------------------------------------------------------------------------------
def promote_due(conn: sqlite3.Connection, clock: Clock, limit: int) -> int:
    with transaction(conn):
        return _promote(conn, clock.now(), max(limit, 0))


def _promote(conn: sqlite3.Connection, now: float, limit: int) -> int:
    cursor = conn.execute("UPDATE tasks SET status = 'queued' WHERE seq IN (SELECT seq FROM tasks"
                          " WHERE status = 'scheduled' AND run_at <= ? ORDER BY run_at, seq LIMIT ?)", (now, limit))
    return cursor.rowcount


def reclaim_expired(conn: sqlite3.Connection, clock: Clock, limit: int, lease_seconds: float) -> list[Lease]:
    with transaction(conn):
        now = clock.now()
        rows = conn.execute(f"{SELECT_LEASED} WHERE status = 'running' AND lease_expires <= ?"
                            " ORDER BY lease_expires, seq LIMIT ?", (now, max(limit, 0))).fetchall()
        tokens = _next_tokens(conn, len(rows))
        expires = now + lease_seconds
        leases = [Lease(task_from_row(row), token, expires, bool(row["cancel_requested"]))
                  for row, token in zip(rows, tokens, strict=True)]
        conn.executemany("UPDATE tasks SET lease_token = ?, lease_expires = ? WHERE id = ?",
                         [(lease.token, lease.expires_at, lease.task.id) for lease in leases])
    return leases


def purge_finished(conn: sqlite3.Connection, clock: Clock, older_than: float, limit: int) -> int:
    cursor = conn.execute("DELETE FROM tasks WHERE seq IN (SELECT seq FROM tasks WHERE status IN"
                          " ('succeeded', 'cancelled') AND finished_at < ? LIMIT ?)",
                          (clock.now() - older_than, max(limit, 0)))
    return cursor.rowcount


# -- TaskStore ------------------------------------------------------------------------------
def get(conn: sqlite3.Connection, task_id: str) -> Task | None:
    row = conn.execute(f"{SELECT_TASKS} WHERE id = ?", (task_id,)).fetchone()
    return None if row is None else task_from_row(row)


def query(conn: sqlite3.Connection, q: TaskQuery) -> Page:
    filters = {"status": q.status.value if q.status else None, "type": q.type, "queue": q.queue, "tenant": q.tenant}
    where = [f"{column} = ?" for column, value in filters.items() if value is not None]
    params: list[object] = [value for value in filters.values() if value is not None]
    before = parse_cursor(q.cursor)
    if before is not None:
        where.append("seq < ?")
        params.append(before)
    sql = SELECT_TASKS + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY seq DESC LIMIT ?"
    limit = max(q.limit, 0)
    rows = conn.execute(sql, (*params, limit + 1)).fetchall()
    more = len(rows) > limit and limit > 0
    rows = rows[:limit]
    return Page([task_from_row(row) for row in rows], str(rows[-1]["seq"]) if more else None)


def parse_cursor(cursor: str | None) -> int | None:
    """The seq a page continues below; None (start from the newest) for anything that is not one."""
    if cursor and cursor.isascii() and cursor.isdigit() and len(cursor) <= _MAX_CURSOR_DIGITS:
        return int(cursor)
    return None


def request_cancel(conn: sqlite3.Connection, task_id: str) -> Task | None:
    with transaction(conn):
        if conn.execute("UPDATE tasks SET cancel_requested = 1 WHERE id = ? AND status = 'running'",
                        (task_id,)).rowcount != 1:
            return None
        return get(conn, task_id)


def transition(conn: sqlite3.Connection, clock: Clock, task: Task, expected: TaskStatus) -> Task | None:
    # One UPDATE is atomic on its own: the WHERE clause is the compare, the SET the swap.
    task = stamped(task, clock.now())
    cursor = conn.execute(f"{UPDATE_TASK} WHERE id = ? AND status = ?",
                          (*task_values(task)[1:], task.id, expected.value))
    return task if cursor.rowcount == 1 else None


def backlog(conn: sqlite3.Connection) -> int:
    (count,) = conn.execute("SELECT COUNT(*) FROM tasks WHERE status = 'queued'").fetchone()  # tasks_claim's prefix
    return int(count)


def stats(conn: sqlite3.Connection) -> Stats:
    by_status = {status: 0 for status in TaskStatus}
    queued: dict[str, dict[Priority, int]] = {}
    with transaction(conn, "DEFERRED"):  # one snapshot for both counts
        for status, count in conn.execute("SELECT status, COUNT(*) FROM tasks GROUP BY status"):
            by_status[TaskStatus(status)] = count
        for queue, priority, count in conn.execute("SELECT queue, priority, COUNT(*) FROM tasks"
                                                   " WHERE status = 'queued' GROUP BY queue, priority"):
            queued.setdefault(queue, {p: 0 for p in Priority})[Priority(priority)] = count
    return Stats(by_status, queued)


# -- ScheduleStore --------------------------------------------------------------------------
def put_schedule(conn: sqlite3.Connection, schedule: Schedule) -> None:
    conn.execute(PUT_SCHEDULE, schedule_values(schedule))


def get_schedule(conn: sqlite3.Connection, name: str) -> Schedule | None:
    row = conn.execute(f"{SELECT_SCHEDULES} WHERE name = ?", (name,)).fetchone()
    return None if row is None else schedule_from_row(row)


def delete_schedule(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("DELETE FROM schedules WHERE name = ?", (name,)).rowcount == 1


def schedules(conn: sqlite3.Connection) -> list[Schedule]:
    return [schedule_from_row(row) for row in conn.execute(f"{SELECT_SCHEDULES} ORDER BY name")]


def advance_schedule(conn: sqlite3.Connection, name: str, expected_next: float, next_run: float) -> bool:
    cursor = conn.execute("UPDATE schedules SET next_run = ?, last_run = ? WHERE name = ? AND next_run = ?",
                          (next_run, expected_next, name, expected_next))
    return cursor.rowcount == 1


# -- RateLimiter ----------------------------------------------------------------------------
def acquire(conn: sqlite3.Connection, clock: Clock, key: str, rate: float, burst: int) -> float:
    with transaction(conn):  # IMMEDIATE: two processes cannot both take the last token
        row = conn.execute("SELECT tokens, updated FROM rate_buckets WHERE key = ?", (key,)).fetchone()
        bucket, wait = take(None if row is None else Bucket(row["tokens"], row["updated"]), clock.now(), rate, burst)
        conn.execute("INSERT OR REPLACE INTO rate_buckets (key, tokens, updated) VALUES (?, ?, ?)",
                     (key, bucket.tokens, bucket.updated))
    return wait


# -- TenantQuota ----------------------------------------------------------------------------
def count_waiting(conn: sqlite3.Connection, tenant: str) -> int:
    (count,) = conn.execute("SELECT COUNT(*) FROM tasks WHERE tenant = ? AND status IN ('queued', 'scheduled')",
                            (tenant,)).fetchone()
    return int(count)


def _known(conn: sqlite3.Connection, task: Task) -> bool:
    row = conn.execute("SELECT 1 FROM tasks WHERE id = ? OR (tenant = ? AND idempotency_key = ?)",
                       (task.id, task.tenant, task.idempotency_key)).fetchone()
    return row is not None


def ping(conn: sqlite3.Connection) -> None:
    conn.execute("SELECT 1").fetchone()

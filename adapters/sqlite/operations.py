"""The backend's operations other than the Broker's (broker.py) as plain blocking functions of one connection.

Each read-modify-write runs in one BEGIN IMMEDIATE transaction, which is what makes them atomic across threads
and processes; any other is a single statement. So every one can run again after it failed (the connection
layer retries a held lock). Time is read from the injected clock inside the transaction.
"""

from __future__ import annotations

import json
import sqlite3

from hexq.adapters.sqlite import fairness, search
from hexq.adapters.sqlite.rows import (
    CANCEL_REQUESTED,
    PUT_SCHEDULE,
    SELECT_LEASED,
    SELECT_LEASES,
    SELECT_SCHEDULES,
    SELECT_TASKS,
    UPDATE_TASK,
    lease_from_row,
    query_filters,
    schedule_from_row,
    schedule_values,
    task_from_row,
    task_values,
)
from hexq.adapters.sqlite.schema import transaction
from hexq.core.clock import stamped
from hexq.core.model import STATES, Lease, Page, Priority, Stats, Task, TaskQuery, TaskStatus, WorkerInfo
from hexq.core.ports import Clock
from hexq.core.ratelimit import Bucket, take
from hexq.core.schedule import Schedule

_MAX_CURSOR_DIGITS = 18  # fits a signed 64-bit integer


# -- Sweeper --------------------------------------------------------------------------------
def promote_due(conn: sqlite3.Connection, clock: Clock, limit: int) -> int:
    with transaction(conn):  # read, then write: the fair-queue turns of the tasks it moves (fairness.promote)
        return fairness.promote(conn, clock.now(), max(limit, 0))


def reclaim_expired(conn: sqlite3.Connection, clock: Clock, limit: int, lease_seconds: float) -> list[Lease]:
    with transaction(conn):
        now = clock.now()
        rows = conn.execute(f"{SELECT_LEASED} INDEXED BY tasks_running WHERE status = 'running' AND lease_expires <= ?"
                            " ORDER BY lease_expires, seq LIMIT ?", (now, max(limit, 0))).fetchall()
        if not rows:
            return []
        (last,) = conn.execute("UPDATE counters SET value = value + ? WHERE name = 'lease_token' RETURNING value",
                               (len(rows),)).fetchone()
        first, expires = last - len(rows) + 1, now + lease_seconds
        conn.executemany("UPDATE tasks SET lease_token = ?, lease_expires = ? WHERE seq = ?",
                         [(first + i, expires, row[0]) for i, row in enumerate(rows)])
    return [Lease(task_from_row(row), first + i, expires, bool(row[CANCEL_REQUESTED])) for i, row in enumerate(rows)]


# -- LeaseReader ----------------------------------------------------------------------------
def lease(conn: sqlite3.Connection, task_id: str) -> Lease | None:
    row = conn.execute(f"{SELECT_LEASES} WHERE id = ? AND status = 'running'", (task_id,)).fetchone()
    return None if row is None else lease_from_row(row)


def leases(conn: sqlite3.Connection, limit: int, tenant: str | None) -> list[Lease]:
    """Soonest expiry first, along the partial index of running tasks (no scan bound needed: the tenant filter
    is a column test on rows the index already orders)."""
    where, args = ("AND tenant = ? ", (tenant,)) if tenant is not None else ("", ())
    rows = conn.execute(f"{SELECT_LEASES} INDEXED BY tasks_running WHERE status = 'running' {where}"
                        "ORDER BY lease_expires, seq LIMIT ?", (*args, max(limit, 0))).fetchall()
    return [lease_from_row(row) for row in rows]


def purge_finished(conn: sqlite3.Connection, clock: Clock, older_than: float, limit: int) -> int:
    cursor = conn.execute("DELETE FROM tasks WHERE seq IN (SELECT seq FROM tasks INDEXED BY tasks_purgeable WHERE"
                          " status IN ('succeeded', 'cancelled') AND finished_at < ? LIMIT ?)",
                          (clock.now() - older_than, max(limit, 0)))
    return cursor.rowcount


# -- TaskStore ------------------------------------------------------------------------------
def get(conn: sqlite3.Connection, task_id: str) -> Task | None:
    row = conn.execute(f"{SELECT_TASKS} WHERE id = ?", (task_id,)).fetchone()
    return None if row is None else task_from_row(row)


def query(conn: sqlite3.Connection, q: TaskQuery) -> Page:
    if q.search:
        return search.query(conn, q, parse_cursor(q.cursor))
    where, params = query_filters(q)
    before = parse_cursor(q.cursor)
    if before is not None:
        where.append("seq < ?")
        params.append(before)
    sql = SELECT_TASKS + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY seq DESC LIMIT ?"
    limit = max(q.limit, 0)
    rows = conn.execute(sql, (*params, limit + 1)).fetchall()
    more = len(rows) > limit and limit > 0
    scanned = len(rows)
    rows = rows[:limit]
    return Page([task_from_row(row) for row in rows], str(rows[-1][0]) if more else None, scanned)  # seq


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
    (count,) = conn.execute("SELECT COUNT(*) FROM tasks INDEXED BY tasks_ready WHERE status = 'queued'"
                            " AND queue NOT IN (SELECT queue FROM paused_queues)").fetchone()
    return int(count)


def stats(conn: sqlite3.Connection, clock: Clock) -> Stats:
    by_status = {status: 0 for status in TaskStatus}
    queued: dict[str, dict[Priority, int]] = {}
    depth: dict[tuple[str, Priority, str], int] = {}
    oldest: dict[tuple[str, Priority], float] = {}
    with transaction(conn, "DEFERRED"):  # one snapshot for every count
        now = clock.now()
        for status, count in conn.execute("SELECT status, COUNT(*) FROM tasks GROUP BY status"):
            by_status[TaskStatus(status)] = count
        # A search of tasks_listing per state in STATES: the finished tasks, most of the table, are not read.
        for queue, level, status, count, since in conn.execute(
                "SELECT queue, priority, status, COUNT(*), MIN(MAX(created_at, run_at)) FROM tasks INDEXED BY"
                f" tasks_listing WHERE status IN ({', '.join('?' * len(STATES))}) GROUP BY queue, priority, status",
                STATES):
            priority = Priority(level)
            depth[queue, priority, status] = count
            if status == TaskStatus.QUEUED:
                queued.setdefault(queue, {p: 0 for p in Priority})[priority] = count
                oldest[queue, priority] = now - since
        paused = frozenset(queue for (queue,) in conn.execute("SELECT queue FROM paused_queues"))
    return Stats(by_status, queued, depth, oldest, paused)


# -- QueueControl ---------------------------------------------------------------------------
def pause(conn: sqlite3.Connection, queue: str) -> bool:
    return conn.execute("INSERT OR IGNORE INTO paused_queues (queue) VALUES (?)", (queue,)).rowcount == 1


def resume(conn: sqlite3.Connection, queue: str) -> bool:
    return conn.execute("DELETE FROM paused_queues WHERE queue = ?", (queue,)).rowcount == 1


def paused(conn: sqlite3.Connection) -> frozenset[str]:
    return frozenset(queue for (queue,) in conn.execute("SELECT queue FROM paused_queues"))


# -- WorkerRegistry -------------------------------------------------------------------------
def beat(conn: sqlite3.Connection, clock: Clock, worker: WorkerInfo, ttl: float) -> None:
    with transaction(conn):
        now = clock.now()
        row = conn.execute("SELECT started_at FROM workers WHERE id = ? AND expires > ?", (worker.id, now)).fetchone()
        conn.execute("INSERT OR REPLACE INTO workers (id, host, pid, queues, started_at, last_seen, running, expires)"
                     " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (worker.id, worker.host, worker.pid, json.dumps(worker.queues),
                                                          now if row is None else row[0], now, worker.running,
                                                          now + ttl))
        conn.execute("DELETE FROM workers WHERE expires <= ?", (now,))


def leave(conn: sqlite3.Connection, worker_id: str) -> None:
    conn.execute("DELETE FROM workers WHERE id = ?", (worker_id,))


def workers(conn: sqlite3.Connection, clock: Clock) -> list[WorkerInfo]:
    rows = conn.execute("SELECT id, host, pid, queues, started_at, last_seen, running FROM workers"
                        " WHERE expires > ? ORDER BY id", (clock.now(),))
    return [WorkerInfo(worker_id, host, pid, tuple(json.loads(queues)), started_at, last_seen, running)
            for worker_id, host, pid, queues, started_at, last_seen, running in rows]


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
        bucket, wait = take(None if row is None else Bucket(row[0], row[1]), clock.now(), rate, burst)
        conn.execute("INSERT OR REPLACE INTO rate_buckets (key, tokens, updated) VALUES (?, ?, ?)",
                     (key, bucket.tokens, bucket.updated))
    return wait


# -- TenantQuota ----------------------------------------------------------------------------
def count_waiting(conn: sqlite3.Connection, tenant: str) -> int:
    (count,) = conn.execute("SELECT COUNT(*) FROM tasks INDEXED BY tasks_waiting WHERE tenant = ?"
                            " AND status IN ('queued', 'scheduled')", (tenant,)).fetchone()
    return int(count)


def ping(conn: sqlite3.Connection) -> None:
    conn.execute("SELECT 1").fetchone()

"""The Broker's operations (enqueue, claim, settle, extend, and settle-and-claim) as blocking functions of one
connection. Each write is one BEGIN IMMEDIATE transaction, which makes it atomic across threads and processes,
and can run again after it failed (the connection layer retries a held lock). Time is read from the injected
clock inside the transaction.

The write lock is SQLite's one point of contention between processes, so what can be done before or after it
is: JSON is encoded before BEGIN, claimed rows become Tasks after COMMIT, and inside there is little Python
beyond binding parameters.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hexq.adapters.sqlite import fairness
from hexq.adapters.sqlite.codec import dumps
from hexq.adapters.sqlite.operations import count_waiting
from hexq.adapters.sqlite.rows import (
    SELECT_TASKS,
    TASK_COLUMNS,
    UPDATE_TASK,
    started_from_row,
    task_from_row,
    task_values,
)
from hexq.adapters.sqlite.schema import transaction
from hexq.core import idempotency, quota
from hexq.core.clock import stamped
from hexq.core.fairness import step_of
from hexq.core.model import TERMINAL, WAITING, Lease, Settlement, Task, TaskStatus
from hexq.core.ports import Clock

Outcome = list[Task] | Exception  # what one enqueue call gets: its tasks as stored, or its own error

# A new task with its fair-queue turn and step (fairness.py) after TASK_COLUMNS.
_INSERT_FAIR = (f"INSERT INTO tasks ({', '.join(TASK_COLUMNS)}, turn, step)"
                f" VALUES ({', '.join('?' * (len(TASK_COLUMNS) + 2))})")
# Ready tasks in claim order, with the turn after SELECT_TASKS's columns (_TURN).
_NEXT_QUEUED = (f"SELECT seq, {', '.join(TASK_COLUMNS)}, turn FROM tasks INDEXED BY tasks_ready"
                " WHERE status = 'queued' AND queue = ? ORDER BY priority DESC, turn, seq LIMIT ?")
_TURN = len(TASK_COLUMNS) + 1
_NO_TURN = float("-inf")  # how a task queued before fair queues (turn NULL) sorts: first, as in the index
_PAUSED = "SELECT queue FROM paused_queues"
_TOKENS = "UPDATE counters SET value = value + ? WHERE name = 'lease_token' RETURNING value"
_START = ("UPDATE tasks SET status = 'running', attempts = ?, started_at = ?, worker_id = ?, lease_token = ?,"
          " lease_expires = ? WHERE seq = ?")
_CURRENT = " WHERE id = ? AND status = 'running' AND lease_token = ?"  # the fence of every write under a lease
# What settling can change (the outcome, its times, the retry's delay), so the other columns and the indexes
# over them are left alone; a settlement that changed anything else writes the whole task (UPDATE_TASK).
_SETTLE = ("UPDATE tasks SET status = ?, attempts = ?, run_at = ?, finished_at = ?, delay = ?, worker_id = ?,"
           " result = ?, error = ?, traceback = ?, lease_token = NULL, lease_expires = NULL, cancel_requested = 0"
           + _CURRENT)
_SETTLE_ALL = UPDATE_TASK + _CURRENT
_EXTEND = "UPDATE tasks SET lease_expires = ?" + _CURRENT + " RETURNING cancel_requested"


# -- enqueue --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Request:
    """One enqueue call: its tasks, its cap, and their payloads as JSON. Made before the operation runs, so an
    operation that found the write lock held and runs again does not encode them again."""

    tasks: Sequence[Task]
    cap: int
    payloads: list[str]

    @classmethod
    def of(cls, tasks: Sequence[Task], cap: int) -> Request:
        return cls(tasks, cap, [dumps(dict(task.payload)) for task in tasks])


def enqueue(conn: sqlite3.Connection, clock: Clock, requests: Sequence[Request],
            weights: Mapping[str, int] | None = None) -> list[Outcome]:
    """Store the tasks of several enqueue calls in one transaction, each call's on its own terms: one call's
    error (QueueFull for its tenant, IdempotencyMismatch, ...) is returned for it alone, and a savepoint
    undoes whatever it wrote. Later calls see what earlier ones stored, as if they had come one by one."""
    with transaction(conn):  # the count and the inserts in one write transaction: the cap cannot be overshot
        now, weights = clock.now(), weights or {}
        if len(requests) == 1:
            return [_enqueue(conn, now, requests[0], weights)]  # its error undoes the transaction
        return [_isolated(conn, now, request, weights) for request in requests]


def _isolated(conn: sqlite3.Connection, now: float, request: Request, weights: Mapping[str, int]) -> Outcome:
    conn.execute("SAVEPOINT request")
    try:
        stored = _enqueue(conn, now, request, weights)
    except sqlite3.OperationalError:
        raise  # the file's error, not the request's: every call of the batch gets it (or it is retried)
    except Exception as exc:
        conn.execute("ROLLBACK TO request")
        conn.execute("RELEASE request")
        return exc
    conn.execute("RELEASE request")
    return stored


def _enqueue(conn: sqlite3.Connection, now: float, request: Request, weights: Mapping[str, int]) -> list[Task]:
    tasks, cap, payloads = request.tasks, request.cap, request.payloads
    idempotency.check(tasks, lambda task: _earlier(conn, task))
    if cap:
        quota.check(tasks, cap, lambda task: _known(conn, task), lambda tenant: count_waiting(conn, tenant))
    turns = fairness.Turns(conn)
    if all(task.idempotency_key is None for task in tasks):  # nothing to look up: one statement for all
        stored = [stamped(task, now, new=True) for task in tasks]
        conn.executemany(_INSERT_FAIR, [_fair_values(task, json, turns, weights)
                                        for task, json in zip(stored, payloads, strict=True)])
    else:
        stored = [_add(conn, task, now, json, turns, weights) for task, json in zip(tasks, payloads, strict=True)]
    turns.save()
    return stored


def _add(conn: sqlite3.Connection, task: Task, now: float, payload: str, turns: fairness.Turns,
         weights: Mapping[str, int]) -> Task:
    stored = _earlier(conn, task)
    if stored is not None:
        return stored
    task = stamped(task, now, new=True)
    conn.execute(_INSERT_FAIR, _fair_values(task, payload, turns, weights))
    return task


def _fair_values(task: Task, payload: str, turns: fairness.Turns, weights: Mapping[str, int]) -> tuple[Any, ...]:
    """INSERT_FAIR's parameters: a queued task gets its turn now, a scheduled one when it is promoted."""
    step = step_of(weights, task.tenant)
    turn = turns.next(task.queue, int(task.priority), task.tenant, step) if task.status is TaskStatus.QUEUED else None
    return (*task_values(task, payload), turn, step)


def _earlier(conn: sqlite3.Connection, task: Task) -> Task | None:
    """The task stored under `task`'s (tenant, idempotency key), if it has one."""
    if task.idempotency_key is None:
        return None
    row = conn.execute(f"{SELECT_TASKS} WHERE tenant = ? AND idempotency_key = ?",
                       (task.tenant, task.idempotency_key)).fetchone()
    return None if row is None else task_from_row(row)


def _known(conn: sqlite3.Connection, task: Task) -> bool:
    row = conn.execute("SELECT 1 FROM tasks WHERE id = ? OR (tenant = ? AND idempotency_key = ?)",
                       (task.id, task.tenant, task.idempotency_key)).fetchone()
    return row is not None


# -- claim ----------------------------------------------------------------------------------------
def claimable(conn: sqlite3.Connection, clock: Clock, queues: Sequence[str]) -> bool:
    """Whether a claim on `queues` would find anything: a task queued there, or one scheduled anywhere that is
    due (the claim promotes it). Reads only, so a claimer with nothing to do takes no write lock."""
    marks = ", ".join("?" * len(queues))
    sql = (f"SELECT EXISTS (SELECT 1 FROM tasks INDEXED BY tasks_ready WHERE status = 'queued' AND queue IN ({marks})"
           " AND queue NOT IN (SELECT queue FROM paused_queues))"
           " OR EXISTS (SELECT 1 FROM tasks INDEXED BY tasks_scheduled WHERE status = 'scheduled' AND run_at <= ?)")
    (found,) = conn.execute(sql, (*queues, clock.now())).fetchone()
    return bool(found)


def data_version(conn: sqlite3.Connection) -> int:
    """A number that changes when another connection commits to the file (not when this one does)."""
    (version,) = conn.execute("PRAGMA data_version").fetchone()
    return int(version)


def claim(conn: sqlite3.Connection, clock: Clock, queues: Sequence[str], n: int, lease_seconds: float,
          worker_id: str) -> list[Lease]:
    with transaction(conn):
        now = clock.now()
        rows, first = _take(conn, now, queues, n, lease_seconds, worker_id)
    return _leases(rows, first, now, lease_seconds, worker_id)  # Tasks are made after the lock is released


def _take(conn: sqlite3.Connection, now: float, queues: Sequence[str], n: int, lease_seconds: float,
          worker_id: str) -> tuple[list[tuple[Any, ...]], int]:
    """Lease the next `n` queued tasks (rows as they were, queued) under tokens first, first + 1, ..."""
    fairness.promote(conn, now, -1)  # LIMIT -1: every due task, as the memory backend promotes them
    rows = _next_queued(conn, queues, max(n, 0))
    if not rows:
        return rows, 0
    fairness.claimed(conn, [(row[4], row[5], row[_TURN]) for row in rows])  # queue, priority, turn
    (last,) = conn.execute(_TOKENS, (len(rows),)).fetchone()  # never reused: one counter for every queue
    first, expires = last - len(rows) + 1, now + lease_seconds
    conn.executemany(_START, [(row[7] + 1, now, worker_id, first + i, expires, row[0]) for i, row in enumerate(rows)])
    return rows, first


def _leases(rows: list[tuple[Any, ...]], first: int, now: float, lease_seconds: float, worker_id: str) -> list[Lease]:
    expires = now + lease_seconds
    return [Lease(started_from_row(row, now, worker_id), first + i, expires) for i, row in enumerate(rows)]


def _next_queued(conn: sqlite3.Connection, queues: Sequence[str], n: int) -> list[tuple[Any, ...]]:
    """The first `n` queued tasks across `queues` by priority, then age. One indexed query per queue and
    a merge: a single `queue IN (...)` query would sort every queued task of those queues."""
    if n == 0:
        return []
    paused = {queue for (queue,) in conn.execute(_PAUSED)}  # one read of a table that is usually empty
    names = [queue for queue in dict.fromkeys(queues) if queue not in paused]
    if not names:
        return []
    if len(names) == 1:
        return conn.execute(_NEXT_QUEUED, (names[0], n)).fetchall()
    rows: list[tuple[Any, ...]] = []
    for queue in names:
        rows += conn.execute(_NEXT_QUEUED, (queue, n)).fetchall()
    return sorted(rows, key=_claim_order)[:n]


def _claim_order(row: tuple[Any, ...]) -> tuple[int, float, int]:
    """tasks_ready's order: priority (highest first), turn, seq."""
    turn = row[_TURN]
    return -row[5], _NO_TURN if turn is None else turn, row[0]


# -- settle and extend ----------------------------------------------------------------------------
def settle(conn: sqlite3.Connection, clock: Clock, writes: list[Write]) -> list[bool]:
    with transaction(conn):
        return _settle(conn, clock.now(), writes)


def settle_and_claim(conn: sqlite3.Connection, clock: Clock, writes: list[Write], queues: Sequence[str], n: int,
                     lease_seconds: float, worker_id: str) -> tuple[list[bool], list[Lease]]:
    """settle, then claim, in one transaction at one moment: the claim sees what the settles released."""
    with transaction(conn):
        now = clock.now()
        applied = _settle(conn, now, writes)
        rows, first = _take(conn, now, queues, n, lease_seconds, worker_id)
    return applied, _leases(rows, first, now, lease_seconds, worker_id)


@dataclass(frozen=True, slots=True)
class Write:
    """A settlement as the parameters of _SETTLE, all but the two times only the transaction's clock can give.
    Made before the operation runs (Write.of), as Request is."""

    task: Task
    head: tuple[Any, ...]  # status, attempts
    tail: tuple[Any, ...]  # delay, worker_id, result, error, traceback, id, token
    narrow: bool  # False: the task changed beyond what _SETTLE writes, so _SETTLE_ALL writes all of it
    token: int

    @classmethod
    def of(cls, settlement: Settlement) -> Write:
        task, token = settlement.task, settlement.lease.token
        if not _same_request(task, settlement.lease.task):
            return cls(task, (), (), False, token)
        result = None if task.result is None else dumps(task.result)
        return cls(task, (task.status.value, task.attempts),
                   (task.delay, task.worker_id, result, task.error, task.traceback, task.id, token), True, token)

    def params(self, now: float) -> tuple[Any, ...]:
        if not self.narrow:
            task = stamped(self.task, now)
            return (*task_values(task)[1:], task.id, self.token)
        return (*self.head, *stamped_times(self.task, now), *self.tail)


def stamped_times(task: Task, now: float) -> tuple[float, float | None]:
    """(run_at, finished_at) of hexq.core.clock.stamped(task, now), without making the Task (the rule's
    reference stays there; test_sqlite_only checks that the two agree)."""
    if task.status in WAITING:
        return max(task.run_at, now + task.delay), None
    return task.run_at, now if task.status in TERMINAL else task.finished_at


def _settle(conn: sqlite3.Connection, now: float, writes: list[Write]) -> list[bool]:
    if len(writes) > 1 and all(write.narrow for write in writes):
        # All in one statement, and in the usual case (no lease was lost) that is the answer.
        conn.execute("SAVEPOINT settle")
        cursor = conn.executemany(_SETTLE, [write.params(now) for write in writes])
        if cursor.rowcount == len(writes):
            conn.execute("RELEASE settle")
            return [True] * len(writes)
        conn.execute("ROLLBACK TO settle")  # some lease was lost: which? One statement each, then
        conn.execute("RELEASE settle")
    cursor = conn.cursor()
    return [cursor.execute(_SETTLE if write.narrow else _SETTLE_ALL, write.params(now)).rowcount == 1
            for write in writes]


def _same_request(task: Task, before: Task) -> bool:
    """Whether `task` keeps every column that _SETTLE leaves alone (a worker's outcome does, unless the attempt
    failed: then its history grew, and the whole task is written)."""
    return ((task.payload is before.payload or task.payload == before.payload) and task.type == before.type
            and task.queue == before.queue and task.priority == before.priority and task.tenant == before.tenant
            and task.idempotency_key == before.idempotency_key and task.max_attempts == before.max_attempts
            and task.timeout == before.timeout and task.created_at == before.created_at
            and task.started_at == before.started_at and task.history is before.history)


def extend(conn: sqlite3.Connection, clock: Clock, leases: Sequence[Lease], lease_seconds: float) -> list[Lease | None]:
    with transaction(conn):
        expires = clock.now() + lease_seconds
        cursor = conn.cursor()
        return [_touched(lease, expires, cursor.execute(_EXTEND, (expires, lease.task.id, lease.token)).fetchone())
                for lease in leases]


def _touched(lease: Lease, expires: float, row: tuple[Any, ...] | None) -> Lease | None:
    return None if row is None else Lease(lease.task, lease.token, expires, bool(row[0]))

"""The SQLite schema, connection setup and the transaction helper.

Creating the schema is idempotent and runs inside BEGIN IMMEDIATE, so two processes that open a
fresh file at the same moment take turns instead of failing.
"""

from __future__ import annotations

import sqlite3
import time
from types import TracebackType

TASKS = """
CREATE TABLE IF NOT EXISTS tasks (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- FIFO order within a priority, and the query cursor
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    payload TEXT NOT NULL,                  -- JSON object
    queue TEXT NOT NULL,
    priority INTEGER NOT NULL,              -- hexq.core.model.Priority, 0 (low) .. 3 (critical)
    status TEXT NOT NULL,                   -- hexq.core.model.TaskStatus value
    attempts INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    timeout REAL NOT NULL,
    run_at REAL NOT NULL,
    delay REAL NOT NULL DEFAULT 0,          -- hexq.core.model.Task.delay (added after the first release)
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    worker_id TEXT,
    result TEXT,                            -- JSON value, NULL for None
    error TEXT,
    traceback TEXT,                         -- of the last failed attempt (added after the first release)
    idempotency_key TEXT,
    tenant TEXT NOT NULL,
    lease_token INTEGER,                    -- set only while running
    lease_expires REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,  -- 1: cancel this running task (added after the first release)
    history TEXT,                           -- JSON list of the attempts that did not succeed; NULL: none
    turn REAL,                              -- fair queues: its turn once queued (fairness.py); NULL: none yet
    step REAL NOT NULL DEFAULT 1            -- fair queues: 1 / its tenant's weight when it was submitted
)"""

SCHEDULES = """
CREATE TABLE IF NOT EXISTS schedules (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    type TEXT NOT NULL,
    payload TEXT NOT NULL,
    queue TEXT NOT NULL,
    priority INTEGER NOT NULL,
    next_run REAL NOT NULL,
    last_run REAL,
    enabled INTEGER NOT NULL,
    tenant TEXT NOT NULL
)"""

# Partial indexes: each holds only the tasks in the status it serves, so a task's claim or settle moves
# it between two small indexes instead of rewriting one entry in each of six (a commit writes every page
# it touched to the WAL, so fewer indexes is fewer pages per task). The queries name them with INDEXED BY:
# the planner would otherwise prefer tasks_listing's equality on status to their range.
INDEXES = (
    # The claim order: strict priority, then turns (fair queues), then seq (ties between tenants).
    "CREATE INDEX IF NOT EXISTS tasks_ready ON tasks (queue, priority DESC, turn, seq) WHERE status = 'queued'",
    "CREATE INDEX IF NOT EXISTS tasks_scheduled ON tasks (run_at) WHERE status = 'scheduled'",
    "CREATE INDEX IF NOT EXISTS tasks_running ON tasks (lease_expires) WHERE status = 'running'",
    "CREATE INDEX IF NOT EXISTS tasks_purgeable ON tasks (finished_at) WHERE status IN ('succeeded', 'cancelled')",
    "CREATE INDEX IF NOT EXISTS tasks_listing ON tasks (status, seq)",  # query by status, newest first
    "CREATE INDEX IF NOT EXISTS tasks_waiting ON tasks (tenant) WHERE status IN ('queued', 'scheduled')",  # the cap
    "CREATE UNIQUE INDEX IF NOT EXISTS tasks_idempotency ON tasks (tenant, idempotency_key)"
    " WHERE idempotency_key IS NOT NULL",
)
# The full indexes these replaced: a file made by an older hexq loses them when it is opened.
DROPPED_INDEXES = ("tasks_claim", "tasks_due", "tasks_leases", "tasks_finished", "tasks_tenant", "tasks_queued")

DDL = (
    TASKS,
    *INDEXES,
    *(f"DROP INDEX IF EXISTS {name}" for name in DROPPED_INDEXES),
    SCHEDULES,
    # Fencing tokens come from one global counter, so a token is never reused, even across queues.
    "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO counters (name, value) VALUES ('lease_token', 0)",
    # The WorkerRegistry: one row per worker, refreshed by its beats; `expires` is the host time its next beat is
    # due by (rows past it are deleted by the next beat, and never listed).
    "CREATE TABLE IF NOT EXISTS workers (id TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL,"
    " queues TEXT NOT NULL, started_at REAL NOT NULL, last_seen REAL NOT NULL, running INTEGER NOT NULL,"
    " expires REAL NOT NULL)",
    # QueueControl: the paused queues, which claims skip (a queue is paused while its row exists).
    "CREATE TABLE IF NOT EXISTS paused_queues (queue TEXT PRIMARY KEY)",
    # Fair queues (fairness.py): per queue and level, the highest turn claimed, and each tenant's last turn.
    "CREATE TABLE IF NOT EXISTS fair_clocks (queue TEXT NOT NULL, priority INTEGER NOT NULL, turn REAL NOT NULL,"
    " PRIMARY KEY (queue, priority)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS fair_turns (queue TEXT NOT NULL, priority INTEGER NOT NULL, tenant TEXT NOT NULL,"
    " turn REAL NOT NULL, PRIMARY KEY (queue, priority, tenant)) WITHOUT ROWID",
    # Token buckets of the RateLimiter port: one row per bucket (per API key), so no purge is needed.
    "CREATE TABLE IF NOT EXISTS rate_buckets (key TEXT PRIMARY KEY, tokens REAL NOT NULL, updated REAL NOT NULL)",
    # BreakerStore: one row per circuit breaker, its state as JSON (hexq.core.breaker), CAS on version.
    "CREATE TABLE IF NOT EXISTS breakers (name TEXT PRIMARY KEY, version INTEGER NOT NULL, state TEXT NOT NULL)",
)


def connect(path: str, busy_timeout: float) -> sqlite3.Connection:
    """Open `path` in WAL mode and create the schema if it is missing.

    isolation_level=None leaves transactions to us (explicit BEGIN IMMEDIATE); `timeout` is
    SQLite's busy_timeout: how long a writer waits for another connection's lock.
    """
    conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
    try:
        _enable_wal(conn, busy_timeout)
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across app crashes, not power loss
        with transaction(conn):
            conn.execute(TASKS)
            _add_missing_columns(conn)  # before the indexes: one of them may be over an added column
            for statement in DDL[1:]:
                conn.execute(statement)
    except BaseException:
        conn.close()
        raise
    return conn


# Columns added since the first release, with their definitions: a file made by an older hexq gains
# them when it is opened (inside the schema's transaction, so two processes cannot both add one).
ADDED_COLUMNS = {"delay": "REAL NOT NULL DEFAULT 0", "traceback": "TEXT",
                 "cancel_requested": "INTEGER NOT NULL DEFAULT 0", "history": "TEXT", "turn": "REAL",
                 "step": "REAL NOT NULL DEFAULT 1"}


def _add_missing_columns(conn: sqlite3.Connection) -> None:
    have = {row[1] for row in conn.execute("PRAGMA table_info(tasks)")}  # (cid, name, type, ...)
    for name, definition in ADDED_COLUMNS.items():
        if name not in have:
            conn.execute(f"ALTER TABLE tasks ADD COLUMN {name} {definition}")


def _enable_wal(conn: sqlite3.Connection, busy_timeout: float) -> None:
    """Switching a new file to WAL needs an exclusive lock, and SQLite answers "database is locked"
    at once (without its busy handler) when another connection is doing the same: so retry."""
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


class transaction:  # lower case: used as a function, `with transaction(conn):`
    """BEGIN IMMEDIATE takes the write lock up front, so a read-modify-write cannot be overtaken
    between its read and its write (a DEFERRED one would fail with SQLITE_BUSY on upgrade).
    Whatever fails, the COMMIT included, leaves no transaction open: the operation can run again.
    (A class rather than a generator: this runs for every write, and costs a third as much.)"""

    __slots__ = ("_begin", "_conn")

    def __init__(self, conn: sqlite3.Connection, mode: str = "IMMEDIATE") -> None:
        self._conn = conn
        self._begin = f"BEGIN {mode}"

    def __enter__(self) -> sqlite3.Connection:
        self._conn.execute(self._begin)
        return self._conn

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            try:
                self._conn.execute("COMMIT")
                return
            except BaseException:
                self._rollback()
                raise
        self._rollback()

    def _rollback(self) -> None:
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")

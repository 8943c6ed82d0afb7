"""Where a SQLiteBackend's operations run: on the caller's event loop, or on the backend's connection thread.

On the loop (INLINE): every write, and short reads. A write that finds the file unlocked takes tens of
microseconds, less than handing it to a thread and back (a queue, two context switches and a wake-up of the
loop: 40-120 us of CPU per call with asyncio.to_thread). More important with two processes on one file: an
operation on a thread needs the GIL back after each SQLite call, and waits up to the interpreter's 5 ms switch
interval for it while the loop runs Python, holding SQLite's write lock all that time and stalling the other
process. On the loop nobody takes the GIL away. It never waits there: the connection's busy timeout is 0, so a
write that finds the lock held returns at once, and the loop tries again after a pause (0.1 ms doubling to
4 ms, jittered; SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20 ms...) until busy_timeout, serving
other coroutines meanwhile.

On the thread (THREAD): reads whose size has no small bound (a page of 500 tasks, counts over every task),
on a second connection of the thread's own, so a long read and a write never wait for each other; also the
first connect (the schema may wait for another process), and checkpoints. One thread per backend, started on
first use; one idle for a minute ends (closing its connection), and the next call starts another.

Checkpoints. A WAL commit appends pages to the -wal file. SQLite's automatic checkpoint copies them back
into the database inside the commit that crosses 1000 pages, fsync and all (milliseconds, on the caller).
Here it is off: once the WAL is past 4 MiB the thread runs a PASSIVE checkpoint on its own connection,
which waits for no reader or writer. Durability is unchanged: WAL with synchronous=NORMAL survives
an application crash (a commit is in the WAL when COMMIT returns), not a power loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

from hexq.adapters.sqlite.schema import connect
from hexq.core.errors import BackendUnavailable

P = ParamSpec("P")
T = TypeVar("T")

log = logging.getLogger("hexq.sqlite")

_FIRST_PAUSE = 0.0001
_MAX_PAUSE = 0.004
_WAL_LIMIT = 4 * 1024 * 1024  # SQLite's default autocheckpoint: 1000 pages of 4 KiB
_CHECK_EVERY = 256  # rows changed between looks at the WAL's size
_IDLE_EXIT = 60.0
_BUSY = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)

INLINE, THREAD = True, False  # Database.run's first argument: where an operation runs
_Job = Callable[["_Own"], None]
_Inbox = queue.SimpleQueue[_Job | None]  # None ends the thread


class Database:
    """A backend's connection (every write, short reads), its lock, and its thread with a connection of its own.
    Every operation is a plain function of a connection that is safe to run again after it failed: a single
    statement, or one transaction (schema.transaction)."""

    def __init__(self, path: str, busy_timeout: float, name: str = "sqlite") -> None:
        self.name = name
        self._path = path
        self._busy_timeout = busy_timeout
        self._lock = threading.Lock()  # the connection: one operation at a time, whichever thread
        self._conn: sqlite3.Connection | None = None
        self._changes_seen = 0
        self._checkpointing = False
        self._start_lock = threading.Lock()  # the inbox and the thread
        self._inbox: _Inbox | None = None

    async def run(self, where: bool, op: Callable[Concatenate[sqlite3.Connection, P], T], *args: P.args,
                  **kwargs: P.kwargs) -> T:
        """op(connection, *args, **kwargs), on the loop (INLINE) or on the thread (THREAD).

        Raises BackendUnavailable when SQLite reports an operational error (locked past busy_timeout, I/O,
        cannot open); whatever else `op` raises is raised as it is."""
        if where is THREAD:
            return await self._on_thread(op, args, kwargs, own=True)
        ran, value = self._inline(op, args, kwargs)
        if ran:
            return cast(T, value)
        return await self._inline_again(value, op, args, kwargs)

    def start(self, where: bool, op: Callable[Concatenate[sqlite3.Connection, P], T], *args: P.args,
              **kwargs: P.kwargs) -> asyncio.Future[T]:
        """As run(), for a caller that is not a coroutine (a loop callback): the future is done at once when
        the operation ran inline at the first try."""
        if where is THREAD:
            return asyncio.ensure_future(self._on_thread(op, args, kwargs, own=True))
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        try:
            ran, value = self._inline(op, args, kwargs)
        except Exception as exc:
            future.set_exception(exc)
            return future
        if not ran:
            return asyncio.ensure_future(self._inline_again(value, op, args, kwargs))
        future.set_result(cast(T, value))
        return future

    async def _inline_again(self, busy: sqlite3.OperationalError | None, op: Callable[..., T],
                            args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        """Retry on the loop while the lock is held (by another connection, or by this one on the thread)."""
        deadline = time.monotonic() + self._busy_timeout
        pause = _FIRST_PAUSE
        while self._conn is not None:
            await asyncio.sleep(pause * (0.5 + random.random()))
            ran, value = self._inline(op, args, kwargs)
            if ran:
                return cast(T, value)
            busy = value or busy
            if time.monotonic() >= deadline:
                raise BackendUnavailable(self.name, str(busy or "database is locked")) from busy
            pause = min(pause * 2, _MAX_PAUSE)
        return await self._on_thread(op, args, kwargs)  # not open (or closed): opening may wait, so the thread

    async def _on_thread(self, op: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any], *,
                         own: bool = False) -> T:
        """op on the thread: on its own connection (`own`: reads), or on the backend's (which it opens first)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        if own:
            self._post(lambda conns: _deliver(loop, future, lambda: self._retrying(conns.get, None, op, args, kwargs)))
        else:
            self._post(lambda conns: _deliver(loop, future, lambda: self._retrying(self._open, self._lock, op, args,
                                                                                   kwargs)))
        return await future

    async def close(self) -> None:
        """Close the connections once what was asked before has run; a later call opens them again."""
        loop = asyncio.get_running_loop()
        closed: asyncio.Future[None] = loop.create_future()
        self._post(lambda conns: _deliver(loop, closed, self._close))
        with self._start_lock:
            inbox, self._inbox = self._inbox, None
        if inbox is not None:
            inbox.put(None)  # the thread closes its own connection as it ends
        await closed

    # -- inline -----------------------------------------------------------------------------------
    def _inline(self, op: Callable[..., Any], args: tuple[Any, ...],
                kwargs: dict[str, Any]) -> tuple[bool, Any]:
        """(True, what op returned), or (False, the busy error or None) when the lock was held or the connection
        is not open. Never waits."""
        if not self._lock.acquire(blocking=False):
            return False, None
        try:
            conn = self._conn
            if conn is None:
                return False, None
            try:
                value = op(conn, *args, **kwargs)
            except sqlite3.OperationalError as exc:
                if _busy(exc):
                    return False, exc
                raise BackendUnavailable(self.name, str(exc)) from exc
            self._after(conn)
            return True, value
        finally:
            self._lock.release()

    # -- the thread -------------------------------------------------------------------------------
    def _post(self, job: _Job) -> None:
        with self._start_lock:
            if self._inbox is None:
                self._inbox = queue.SimpleQueue()
                threading.Thread(target=self._serve, args=(self._inbox,), name=f"hexq-sqlite:{self._path}",
                                 daemon=True).start()
            self._inbox.put(job)

    def _serve(self, inbox: _Inbox) -> None:
        conns = _Own(self)
        try:
            while True:
                try:
                    job = inbox.get(timeout=_IDLE_EXIT)
                except queue.Empty:
                    with self._start_lock:  # no job can be posted to this inbox while we decide
                        if not inbox.empty():
                            continue
                        if self._inbox is inbox:
                            self._inbox = None
                        return
                if job is None:
                    return
                job(conns)
        finally:
            conns.close()

    def _retrying(self, connection: Callable[[], sqlite3.Connection], lock: threading.Lock | None,
                  op: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        """op(connection(), ...) on the thread, holding `lock` (the backend's connection's; the thread's own needs
        none), and again after a pause while SQLite's lock is held, until busy_timeout."""
        deadline = time.monotonic() + self._busy_timeout
        pause = _FIRST_PAUSE
        while True:
            with lock or contextlib.nullcontext():
                try:
                    conn = connection()
                    value = op(conn, *args, **kwargs)
                except sqlite3.OperationalError as exc:
                    if not _busy(exc) or time.monotonic() >= deadline:
                        raise BackendUnavailable(self.name, str(exc)) from exc
                else:
                    if conn is self._conn:
                        self._after(conn)
                    return value
            time.sleep(max(min(pause * (0.5 + random.random()), deadline - time.monotonic()), 0.0))
            pause = min(pause * 2, _MAX_PAUSE)

    def _open(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = connect(self._path, self._busy_timeout)
            conn.execute("PRAGMA busy_timeout = 0")  # lock waits are ours (see the module docstring)
            conn.execute("PRAGMA wal_autocheckpoint = 0")
            self._conn, self._changes_seen = conn, 0
        return self._conn

    def open_another(self) -> sqlite3.Connection:
        """A second connection to the file, once the backend's has made sure of the schema."""
        with self._lock:
            self._open()
        return sqlite3.connect(self._path, timeout=0, isolation_level=None, check_same_thread=False)

    def _close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # -- checkpoints ------------------------------------------------------------------------------
    def _after(self, conn: sqlite3.Connection) -> None:
        """After each operation (the caller holds the lock): now and then, see whether the WAL needs a checkpoint."""
        changes = conn.total_changes
        if changes - self._changes_seen < _CHECK_EVERY:
            return
        self._changes_seen = changes
        if not self._checkpointing and _size(self._path + "-wal") > _WAL_LIMIT:
            self._checkpointing = True
            self._post(self._checkpoint)

    def _checkpoint(self, conns: _Own) -> None:
        try:
            conns.checkpoint()
        finally:
            self._checkpointing = False


class _Own:
    """The thread's own connection, opened when first needed (after the backend's, which makes the schema)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._conn: sqlite3.Connection | None = None

    def get(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = self._db.open_another()
        return self._conn

    def checkpoint(self) -> None:
        try:
            self.get().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:  # the next one will try again; a commit never depends on it
            log.debug("checkpoint failed: %s", exc)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _deliver(loop: asyncio.AbstractEventLoop, future: asyncio.Future[T], call: Callable[[], T]) -> None:
    """Run call() here (the connection thread) and hand its outcome to `future` on its loop."""
    try:
        value = call()
    except BaseException as exc:  # whatever it is, the awaiting caller gets it
        _post_to(loop, _fail, future, exc)
    else:
        _post_to(loop, _succeed, future, value)


def _post_to(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: Any) -> None:
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:  # the loop is closed: nobody is waiting any more
        pass


def _succeed(future: asyncio.Future[T], value: T) -> None:
    if not future.done():
        future.set_result(value)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


def _busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        return "locked" in str(exc) or "busy" in str(exc)
    return code & 0xFF in _BUSY


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0

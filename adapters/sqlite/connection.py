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
the first connect (the schema may wait for another process), and checkpoints. One thread per backend, started
on first use; one idle for a minute ends, and the next call starts another.

Checkpoints. A WAL commit appends pages to the -wal file. SQLite's automatic checkpoint copies them back
into the database inside the commit that crosses 1000 pages, fsync and all (milliseconds, on the caller).
Here it is off: once the WAL is past 4 MiB the thread runs a PASSIVE checkpoint on a connection of its
own, which waits for no reader or writer. Durability is unchanged: WAL with synchronous=NORMAL survives
an application crash (a commit is in the WAL when COMMIT returns), not a power loss.
"""

from __future__ import annotations

import asyncio
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
_CHECKPOINT = object()  # in the inbox: run a checkpoint (on the thread's own connection)
_Inbox = queue.SimpleQueue[Any]  # a _Job, _CHECKPOINT, or None to end the thread


class Database:
    """One SQLite connection, its lock, and its thread. Every operation is a plain function of the connection
    that is safe to run again after it failed: a single statement, or one transaction (schema.transaction)."""

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
            return await self._on_thread(op, args, kwargs)
        ran, value = self._inline(op, args, kwargs)
        if ran:
            return cast(T, value)
        return await self._inline_again(value, op, args, kwargs)

    def start(self, where: bool, op: Callable[Concatenate[sqlite3.Connection, P], T], *args: P.args,
              **kwargs: P.kwargs) -> asyncio.Future[T]:
        """As run(), for a caller that is not a coroutine (a loop callback): the future is done at once when
        the operation ran inline at the first try."""
        if where is THREAD:
            return asyncio.ensure_future(self._on_thread(op, args, kwargs))
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

    async def _on_thread(self, op: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._post(lambda: _deliver(loop, future, self._retrying, op, args, kwargs))
        return await future

    async def close(self) -> None:
        """Close the connections once what was asked before has run; a later call opens them again."""
        with self._start_lock:
            inbox, self._inbox = self._inbox, None
        if inbox is None:
            return  # no thread: nothing was opened (only the thread opens)
        loop = asyncio.get_running_loop()
        closed: asyncio.Future[None] = loop.create_future()
        inbox.put(lambda: _deliver(loop, closed, _plain, self._close, (), {}))
        inbox.put(None)
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
    def _post(self, job: object) -> None:
        with self._start_lock:
            if self._inbox is None:
                self._inbox = queue.SimpleQueue()
                threading.Thread(target=self._serve, args=(self._inbox,), name=f"hexq-sqlite:{self._path}",
                                 daemon=True).start()
            self._inbox.put(job)

    def _serve(self, inbox: _Inbox) -> None:
        checkpointer: sqlite3.Connection | None = None  # this thread's own connection, for checkpoints only
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
                if job is _CHECKPOINT:
                    checkpointer = self._checkpoint(checkpointer)
                else:
                    job()
        finally:
            if checkpointer is not None:
                checkpointer.close()

    def _retrying(self, op: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        deadline = time.monotonic() + self._busy_timeout
        pause = _FIRST_PAUSE
        while True:
            with self._lock:
                try:
                    conn = self._open()
                    value = op(conn, *args, **kwargs)
                except sqlite3.OperationalError as exc:
                    if not _busy(exc) or time.monotonic() >= deadline:
                        raise BackendUnavailable(self.name, str(exc)) from exc
                else:
                    self._after(conn)
                    return value
            # Another process holds the write lock: look again soon (jittered, so two waiters do not collide).
            time.sleep(max(min(pause * (0.5 + random.random()), deadline - time.monotonic()), 0.0))
            pause = min(pause * 2, _MAX_PAUSE)

    def _open(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = connect(self._path, self._busy_timeout)
            conn.execute("PRAGMA busy_timeout = 0")  # lock waits are ours (see the module docstring)
            conn.execute("PRAGMA wal_autocheckpoint = 0")
            self._conn, self._changes_seen = conn, 0
        return self._conn

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
            self._post(_CHECKPOINT)

    def _checkpoint(self, checkpointer: sqlite3.Connection | None) -> sqlite3.Connection | None:
        try:
            if checkpointer is None:
                checkpointer = sqlite3.connect(self._path, timeout=0, isolation_level=None, check_same_thread=False)
            checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:  # the next one will try again; a commit never depends on it
            log.debug("checkpoint of %s failed: %s", self._path, exc)
        finally:
            self._checkpointing = False
        return checkpointer


def _deliver(loop: asyncio.AbstractEventLoop, future: asyncio.Future[T],
             call: Callable[[Callable[..., T], tuple[Any, ...], dict[str, Any]], T], op: Callable[..., T],
             args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Run call(op, args, kwargs) here (the connection thread) and hand its outcome to `future` on its loop."""
    try:
        value = call(op, args, kwargs)
    except BaseException as exc:  # whatever it is, the awaiting caller gets it
        _post_to(loop, _fail, future, exc)
    else:
        _post_to(loop, _succeed, future, value)


def _plain(op: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
    return op(*args, **kwargs)


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

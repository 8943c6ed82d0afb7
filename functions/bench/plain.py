"""The baselines' backend operations: what the backend does for one task with nothing of hexq around it.

Redis: LPUSH of a task-sized JSON body onto one list, on a client made exactly as hexq makes its own
(hexq.adapters.redis.connection: redis.asyncio with hiredis, the same timeouts and retry); the bulk
baseline pipelines one LPUSH per task, a chunk per round trip; the drain pops with BRPOP, one by one,
on a client without a socket timeout (as hexq's blocking client).

SQLite: one plain INSERT per call into a table of its own in the same file, run as SQLiteBackend runs a
write: through the adapter's own connection.Database (inline on the event loop, the same pragmas, busy
handling and checkpoints), so the baseline follows wherever hexq's dispatch goes; the bulk baseline is
one executemany per chunk in one transaction; the drain deletes the oldest row with DELETE ...
RETURNING, one by one.

memory:// and aws:// have none: a Python list is no baseline, and SQS has no bench here.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")


class Plain(Protocol):
    """One list of opaque bodies on the bench's backend."""

    what: dict[str, str]  # one description per baseline row (client, bulk, drain, http)

    async def push(self, body: bytes) -> None: ...

    async def push_many(self, bodies: Sequence[bytes]) -> None: ...

    async def pop(self) -> bool:
        """Take the oldest body; False when none came (Redis waits up to a second for one)."""
        ...

    async def close(self, *, drop: bool) -> None:
        """Close the connections; `drop` also removes the list or table (the bench's own copy does)."""
        ...


def open_plain(url: str, name: str) -> Plain | None:
    """The baseline operations for `url`'s backend, on a list or table called `name`; None when it has none."""
    scheme = urlsplit(url).scheme
    if scheme in ("redis", "rediss", "redis+cluster"):
        return RedisPlain(url, name)
    if scheme == "sqlite":
        from hexq.functions.bootstrap import sqlite_path

        return SQLitePlain(sqlite_path(url), name)
    return None


class RedisPlain:
    def __init__(self, url: str, name: str) -> None:
        from hexq.adapters.redis.connection import connect, parse

        target = parse(url)
        self._client = connect(target)
        self._blocking = connect(target, blocking=True)
        self._key = name
        kind = "redis.asyncio + hiredis, hexq's connection settings"
        self.what = {"client": f"LPUSH one by one, each awaited ({kind})",
                     "client_concurrent": "LPUSH, the same number of coroutines, each awaited in turn",
                     "bulk": "LPUSH, one per task, pipelined a chunk per round trip",
                     "drain": "BRPOP one by one, each awaited, from the bench process",
                     "http": "bare Starlette endpoint doing one LPUSH, under the same uvicorn"}

    async def push(self, body: bytes) -> None:
        await self._client.lpush(self._key, body)

    async def push_many(self, bodies: Sequence[bytes]) -> None:
        async with self._client.pipeline(transaction=False) as pipe:
            for body in bodies:
                pipe.lpush(self._key, body)
            await pipe.execute()

    async def pop(self) -> bool:
        return await self._blocking.brpop([self._key], timeout=1) is not None

    async def close(self, *, drop: bool) -> None:
        try:
            if drop:
                await self._client.delete(self._key)
        finally:
            await self._client.aclose()
            await self._blocking.aclose()


class SQLitePlain:
    def __init__(self, path: str, name: str) -> None:
        from hexq.adapters.sqlite.connection import Database

        self._db = Database(path, 5.0, "bench-baseline")  # SQLiteBackend's own dispatch, pragmas and busy timeout
        self._table = "bench_" + "".join(c if c.isalnum() else "_" for c in name)
        self._made = False
        self.what = {"client": "one INSERT per call, autocommit, run as SQLiteBackend runs a write",
                     "client_concurrent": "one INSERT per call, the same number of coroutines",
                     "bulk": "executemany INSERT, a chunk per transaction",
                     "drain": "DELETE the oldest row RETURNING it, one by one, from the bench process",
                     "http": "bare Starlette endpoint doing one INSERT, under the same uvicorn"}

    async def push(self, body: bytes) -> None:
        await self._run(_insert, self._table, body)

    async def push_many(self, bodies: Sequence[bytes]) -> None:
        await self._run(_insert_many, self._table, bodies)

    async def pop(self) -> bool:
        return await self._run(_delete_oldest, self._table)

    async def close(self, *, drop: bool) -> None:
        if drop:  # even if this object never wrote: the HTTP baseline's server may have made the table
            await self._run(_drop, self._table)
        await self._db.close()

    async def _run(self, op: Callable[..., T], *args: Any) -> T:
        from hexq.adapters.sqlite.connection import INLINE

        if not self._made:  # the first call opens the file, which Database does on its thread
            await self._db.run(INLINE, _create, self._table)
            self._made = True
        return await self._db.run(INLINE, op, *args)


def _create(conn: sqlite3.Connection, table: str) -> None:
    conn.execute(f"CREATE TABLE IF NOT EXISTS {table} (id INTEGER PRIMARY KEY, body BLOB)")


def _insert(conn: sqlite3.Connection, table: str, body: bytes) -> None:
    conn.execute(f"INSERT INTO {table} (body) VALUES (?)", (body,))


def _insert_many(conn: sqlite3.Connection, table: str, bodies: Sequence[bytes]) -> None:
    from hexq.adapters.sqlite.schema import transaction

    with transaction(conn):
        conn.executemany(f"INSERT INTO {table} (body) VALUES (?)", [(body,) for body in bodies])


def _delete_oldest(conn: sqlite3.Connection, table: str) -> bool:
    return bool(conn.execute(f"DELETE FROM {table} WHERE id = (SELECT min(id) FROM {table}) RETURNING body").fetchall())


def _drop(conn: sqlite3.Connection, table: str) -> None:
    conn.execute(f"DROP TABLE IF EXISTS {table}")

"""Fair queues on SQLite (hexq.core.fairness): the turns of the tasks a transaction makes queued, and the
levels' clocks a claim moves.

A queued task's `turn` column orders the claim (index tasks_ready: queue, priority DESC, turn, seq). Two small
tables hold the rest: fair_clocks (the highest turn claimed per queue and level) and fair_turns (each tenant's
last turn per queue and level). A task queued by a hexq without fair queues has no turn (NULL sorts first), so
it is served before the tasks queued since, as it would have been.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from hexq.core.fairness import next_turn

Level = tuple[str, int]  # (queue, priority)

_READ = ("SELECT (SELECT turn FROM fair_clocks WHERE queue = ?1 AND priority = ?2),"
         " (SELECT turn FROM fair_turns WHERE queue = ?1 AND priority = ?2 AND tenant = ?3)")
_WRITE_LAST = ("INSERT INTO fair_turns (queue, priority, tenant, turn) VALUES (?, ?, ?, ?)"
               " ON CONFLICT (queue, priority, tenant) DO UPDATE SET turn = excluded.turn")
_START_CLOCK = "INSERT OR IGNORE INTO fair_clocks (queue, priority, turn) VALUES (?, ?, ?)"
_MOVE_CLOCK = ("INSERT INTO fair_clocks (queue, priority, turn) VALUES (?, ?, ?)"
               " ON CONFLICT (queue, priority) DO UPDATE SET turn = max(turn, excluded.turn)")


class Turns:
    """The turns handed out in one write transaction: each (queue, level, tenant) is read on first use and
    written once, by save()."""

    __slots__ = ("_conn", "_lasts", "_new", "_started")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._lasts: dict[tuple[str, int, str], float | None] = {}
        self._started: dict[Level, float | None] = {}  # each level's clock as read (or as started here)
        self._new: set[Level] = set()  # levels that had no clock: save() starts theirs

    def next(self, queue: str, priority: int, tenant: str, step: float) -> float:
        key = (queue, priority, tenant)
        if key not in self._lasts:
            clock, self._lasts[key] = self._conn.execute(_READ, key).fetchone()
            self._started.setdefault((queue, priority), clock)
        clock = self._started[queue, priority]
        turn = next_turn(clock, self._lasts[key], step, 0)  # a new level starts at 0
        if clock is None:
            self._started[queue, priority] = turn
            self._new.add((queue, priority))
        self._lasts[key] = turn
        return turn

    def save(self) -> None:
        lasts = [(*key, turn) for key, turn in self._lasts.items() if turn is not None]
        if len(lasts) == 1:  # one tenant in one level, the usual submit: execute costs less than executemany
            self._conn.execute(_WRITE_LAST, lasts[0])
        elif lasts:
            self._conn.executemany(_WRITE_LAST, lasts)
        if self._new:
            self._conn.executemany(_START_CLOCK, [(*level, self._started[level]) for level in self._new])


def claimed(conn: sqlite3.Connection, rows: Iterable[tuple[str, int, float | None]]) -> None:
    """Move the clocks of the levels that (queue, priority, turn) rows were claimed from to their highest turn."""
    highest: dict[Level, float] = {}
    for queue, priority, turn in rows:
        if turn is not None and turn > highest.get((queue, priority), float("-inf")):
            highest[queue, priority] = turn
    if len(highest) == 1:
        conn.execute(_MOVE_CLOCK, (*next(iter(highest)), *highest.values()))
    elif highest:
        conn.executemany(_MOVE_CLOCK, [(*level, turn) for level, turn in highest.items()])


_DUE = ("SELECT seq, queue, priority, tenant, turn, step FROM tasks INDEXED BY tasks_scheduled"
        " WHERE status = 'scheduled' AND run_at <= ? ORDER BY run_at, seq LIMIT ?")
_QUEUE = "UPDATE tasks SET status = 'queued', turn = ? WHERE seq = ?"


def promote(conn: sqlite3.Connection, now: float, limit: int) -> int:
    """Make the scheduled tasks due by `now` queued (at most `limit`; -1: all), earliest first. A task queued
    before (a retry) keeps its turn; one queued for the first time gets one, by the step it was submitted with."""
    rows = conn.execute(_DUE, (now, limit)).fetchall()
    if not rows:
        return 0
    turns = Turns(conn)
    conn.executemany(_QUEUE, [(turns.next(queue, priority, tenant, step) if turn is None else turn, seq)
                              for seq, queue, priority, tenant, turn, step in rows])
    turns.save()
    return len(rows)

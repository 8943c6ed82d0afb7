"""BreakerStore on SQLite: one row per breaker (schema.BREAKERS), written by compare-and-set on its version.

A single INSERT OR IGNORE (version 0: none stored) or UPDATE ... WHERE version = ? is atomic by itself, so no
transaction is needed; every process on the file shares the host's clock, which breaker_states reports.
"""

from __future__ import annotations

import sqlite3
from dataclasses import replace

from hexq.core.breaker import BreakerState
from hexq.core.ports import Clock


def states(conn: sqlite3.Connection, clock: Clock) -> tuple[float, list[BreakerState]]:
    rows = conn.execute("SELECT name, version, state FROM breakers ORDER BY name").fetchall()
    return clock.now(), [BreakerState.from_json(name, text, version) for name, version, text in rows]


def put(conn: sqlite3.Connection, state: BreakerState) -> BreakerState | None:
    new = replace(state, version=state.version + 1)
    if state.version == 0:
        cursor = conn.execute("INSERT OR IGNORE INTO breakers (name, version, state) VALUES (?, 1, ?)",
                              (state.name, new.to_json()))
    else:
        cursor = conn.execute("UPDATE breakers SET version = ?, state = ? WHERE name = ? AND version = ?",
                              (new.version, new.to_json(), state.name, state.version))
    return new if cursor.rowcount == 1 else None

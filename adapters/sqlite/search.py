"""Payload search (TaskQuery.search) over SQLite, bounded by what it examines.

The window is the newest query.max_scan rows below the cursor that have the query's status (an index range of
tasks_listing, or of the primary key without a status): that is what `scanned` counts and what bounds the
work, whatever the other filters turn down. Inside the window, instr() over the stored JSON text picks the
candidates, in SQL, and hexq.core.search.matches confirms each one (the stored text may escape non-ASCII).
"""

from __future__ import annotations

import sqlite3

from hexq.adapters.sqlite.rows import SELECT_TASKS, query_filters, task_from_row
from hexq.core import search
from hexq.core.model import Page, TaskQuery


def query(conn: sqlite3.Connection, q: TaskQuery, before: int | None) -> Page:
    assert q.search is not None
    limit = max(q.limit, 0)
    window, window_params = _window(q, before)
    count, floor = conn.execute(f"SELECT count(*), min(seq) FROM ({window} LIMIT ?)",
                                (*window_params, q.max_scan)).fetchone()
    if limit == 0 or not count:
        return Page([], None, count)
    where, params = query_filters(q)
    forms = search.forms(q.search)
    where += ["seq >= ?", "(" + " OR ".join(["instr(payload, ?) > 0"] * len(forms) + ["instr(error, ?) > 0"]) + ")"]
    params += [floor, *forms, q.search]
    if before is not None:
        where.append("seq < ?")
        params.append(before)
    rows = conn.execute(f"{SELECT_TASKS} WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT ?",
                        (*params, limit + 1)).fetchall()
    tasks = [task for task in map(task_from_row, rows[:limit]) if search.matches(task, q.search)]
    if len(rows) > limit:  # a full page: the scan stops at its last candidate
        last = rows[limit - 1][0]
        scanned = conn.execute(f"SELECT count(*) FROM ({window} LIMIT ?) WHERE seq >= ?",
                               (*window_params, q.max_scan, last)).fetchone()[0]
        return Page(tasks, str(last), scanned)
    return Page(tasks, str(floor) if count == q.max_scan else None, count)


def _window(q: TaskQuery, before: int | None) -> tuple[str, list[object]]:
    where: list[str] = []
    params: list[object] = []
    if q.status is not None:
        where.append("status = ?")
        params.append(q.status.value)
    if before is not None:
        where.append("seq < ?")
        params.append(before)
    return "SELECT seq FROM tasks" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY seq DESC", params

"""The CLI's tables: tasks, schedules and stats, drawn with rich from the API's JSON views.

Cells are rich `Text`, never markup strings, so a task type or error with `[brackets]` shows as written.
Piped output gets a wide console, so a table does not wrap at 80 columns; ids are never cut.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from hexq.core.model import Priority

_PIPED_WIDTH = 150
_LEVELS = tuple(p.name.lower() for p in Priority)


def print_tasks(tasks: Sequence[Mapping[str, Any]], next_cursor: str | None, *, empty: str) -> None:
    if not tasks:
        print(empty)
        return
    table = _table(("id", "type", "queue", "priority", "status", "attempts", "created (UTC)", "error"))
    _keep_whole(table, 0, tasks, "id")
    for task in tasks:
        attempts = f"{_cell(task.get('attempts'))}/{_cell(task.get('max_attempts'))}"
        error = _cell(task.get("error")).replace("\n", " ")
        table.add_row(*map(Text, (_cell(task.get("id")), _cell(task.get("type")), _cell(task.get("queue")),
                                  _cell(task.get("priority")), _cell(task.get("status")), attempts,
                                  _time(task.get("created_at")), error)))
    _console().print(table)
    if next_cursor is not None:
        print(f"more: --cursor {next_cursor}")


def print_schedules(schedules: Sequence[Mapping[str, Any]]) -> None:
    if not schedules:
        print("no schedules")
        return
    table = _table(("name", "spec", "type", "queue", "priority", "enabled", "next run (UTC)", "last run (UTC)"))
    _keep_whole(table, 0, schedules, "name")
    for s in schedules:
        enabled = {True: "yes", False: "no"}.get(s["enabled"], "") if isinstance(s.get("enabled"), bool) else ""
        table.add_row(*map(Text, (_cell(s.get("name")), _cell(s.get("spec")), _cell(s.get("type")),
                                  _cell(s.get("queue")), _cell(s.get("priority")), enabled,
                                  _time(s.get("next_run")), _time(s.get("last_run")))))
    _console().print(table)


def print_queues(queues: Sequence[Mapping[str, Any]]) -> None:
    if not queues:
        print("no queues")
        return
    table = _table(("queue", "state", "queued", "running", "scheduled", "dead"))
    _keep_whole(table, 0, queues, "name")
    for q in queues:
        table.add_row(Text(_cell(q["name"])), Text("paused" if q["paused"] else "active"),
                      *(Text(str(q[count])) for count in ("depth", "running", "scheduled", "dead")))
    _console().print(table)


def print_stats(stats: Mapping[str, Any]) -> None:
    console = _console()
    counts = _table(("status", "count"))
    for status, n in stats["by_status"].items():
        counts.add_row(Text(status), Text(str(n)))
    counts.add_row(Text("backlog"), Text(str(stats["backlog"])))
    console.print(counts)
    if stats["queued"]:
        queued = _table(("queue", *_LEVELS))
        for queue, levels in sorted(stats["queued"].items()):
            queued.add_row(Text(queue), *(Text(str(levels.get(level, 0))) for level in _LEVELS))
        console.print(queued)
    if stats.get("backpressure"):
        console.print(_pressures(stats["backpressure"]))


def _pressures(pressures: Sequence[Mapping[str, Any]]) -> Table:
    """Back pressure per capped queue: its backlog and oldest age against their caps (0: none)."""
    table = _table(("queue", "state", "backlog", "max backlog", "oldest age s", "max age s", "drain/s", "retry after"))
    for p in pressures:
        state = f"overloaded ({p['reason']})" if p["overloaded"] else "accepting"
        retry = f"{p['retry_after']}s" if p["overloaded"] else ""
        table.add_row(*map(Text, (_cell(p["queue"]), state, str(p["backlog"]), str(p["max_backlog"] or "-"),
                                  f"{p['oldest_age']:.1f}", f"{p['max_oldest_age'] or '-'}", f"{p['drain_rate']:.1f}",
                                  retry)))
    return table


def _console() -> Console:
    tty = sys.stdout.isatty()
    return Console(width=None if tty else _PIPED_WIDTH, highlight=False, emoji=False, markup=False)


def _table(headers: Sequence[str]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for header in headers:
        numeric = header in ("count", *_LEVELS)
        table.add_column(header, justify="right" if numeric else "left", no_wrap=True, overflow="ellipsis")
    return table


def _keep_whole(table: Table, column: int, rows: Sequence[Mapping[str, Any]], key: str) -> None:
    """An id or name is what the user copies into the next command: a narrow terminal shrinks the others."""
    table.columns[column].min_width = max(len(_cell(row.get(key))) for row in rows)


def _cell(value: object) -> str:
    return "" if value is None else str(value)


def _time(value: object) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return ""
    try:
        return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, OSError, ValueError):  # a stored time no calendar can show
        return str(value)

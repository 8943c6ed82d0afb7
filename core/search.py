"""Payload search: what a TaskQuery's `search` matches, the same on every backend.

A task matches when `search` is a substring (case-sensitive) of its payload written as compact JSON
(`{"to":"ann@example.com","n":3}`: no spaces, non-ASCII as is) or of its error message. Backends that
can look inside the stored text first (SQLite's instr, Redis's string.find) use `forms` as a cheap
prefilter, and every backend then confirms with `matches`, so the answer does not depend on how a
backend happens to have written the JSON.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from typing import Final

from hexq.core.errors import ValidationError
from hexq.core.model import Page, Task, TaskQuery

MAX_SEARCH: Final = 200  # characters in one search
MAX_SCAN: Final = 10_000  # records one page may examine


def payload_text(task: Task) -> str:
    return json.dumps(task.payload, separators=(",", ":"), ensure_ascii=False, allow_nan=True)


def matches(task: Task, search: str | None) -> bool:
    if not search:
        return True
    return search in payload_text(task) or (task.error is not None and search in task.error)


def forms(search: str) -> tuple[str, ...]:
    """The texts a stored JSON document may hold `search` as: itself, and with non-ASCII characters
    escaped as \\uXXXX (what json.dumps writes with ensure_ascii, which some stored payloads went through)."""
    if search.isascii():
        return (search,)
    return search, "".join(c if c.isascii() else json.dumps(c)[1:-1] for c in search)


def in_window(task: Task, query: TaskQuery) -> bool:
    """The query's priority and created-time window (TaskQuery) accept the task."""
    return ((query.priority is None or task.priority == query.priority)
            and (query.created_after is None or task.created_at >= query.created_after)
            and (query.created_before is None or task.created_at < query.created_before))


def check(query: TaskQuery) -> None:
    """A query's search, scan bound and time window, validated (ValidationError names the field)."""
    for name in ("created_after", "created_before"):
        value = getattr(query, name)
        if value is not None and not math.isfinite(value):
            raise ValidationError(f"{name} must be a finite number of epoch seconds", field=name)
    if query.search is not None and not 1 <= len(query.search) <= MAX_SEARCH:
        raise ValidationError(f"search must be 1 to {MAX_SEARCH} characters", field="search")
    if not 1 <= query.max_scan <= MAX_SCAN:
        raise ValidationError(f"max_scan must be 1 to {MAX_SCAN}", field="max_scan")


def scan(ordered: Iterable[tuple[str, Task]], query: TaskQuery, keep: Callable[[Task], bool]) -> Page:
    """One page from `ordered` (cursor, task), newest first and already past query.cursor: the tasks `keep`
    and `matches` accept, examining at most query.max_scan of them (for backends that hold tasks in memory).
    Past a full page the scan looks for one more match, so that the last page says it is the last."""
    limit = max(query.limit, 0)
    if limit == 0:
        return Page([])
    items: list[Task] = []
    scanned, after_item, last = 0, None, None
    for cursor, task in ordered:
        if scanned == query.max_scan:
            return Page(items, last, scanned)  # the bound: continue below the last record examined
        scanned += 1
        last = cursor
        if keep(task) and matches(task, query.search):
            if len(items) == limit:
                return Page(items, after_item, scanned)
            items.append(task)
            after_item = cursor
    return Page(items, None, scanned)

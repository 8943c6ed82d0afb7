"""Wire shapes of the bulk actions by filter (core.bulk): POST /v1/tasks:cancel and POST /v1/dead:replay with a filter.

Request: {"filter": {"status", "type", "queue", "search", "priority", "created_after", "created_before"},
"limit": 1..10000 (default 1000), "confirm": <count>}; the filter's fields are those of GET /v1/tasks (priority a
level name or 0-3, the window epoch seconds or ISO-8601);
`?dry_run=1` counts and changes nothing (no confirm needed). Response: BulkResult as JSON (bulk_result_to_dict).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.datastructures import QueryParams

from hexq.core.bulk import MAX_LIMIT, BulkResult, Filter
from hexq.core.errors import ValidationError
from hexq.core.model import TaskStatus
from hexq.functions import filters

DEFAULT_LIMIT = 1000
_TEXT_FIELDS = ("status", "type", "queue", "search")
_FILTER_FIELDS = (*_TEXT_FIELDS, "priority", *filters.WINDOW)


def is_filtered(body: Mapping[str, Any]) -> bool:
    """A replay body names a filter (else it names ids)."""
    return "filter" in body


def dry_run(params: QueryParams) -> bool:
    value = params.get("dry_run") or "0"
    if value not in ("0", "1", "true", "false"):
        raise ValidationError("dry_run must be 1 or 0", field="dry_run")
    return value in ("1", "true")


def bulk_request(body: Mapping[str, Any], *, dry: bool) -> tuple[Filter, int, int | None]:
    """(filter, limit, confirm); confirm is None on a dry run and required otherwise."""
    unknown = sorted(set(body) - {"filter", "limit", "confirm"})
    if unknown:
        raise ValidationError(f"unknown field {unknown[0][:64]!r}; allowed fields: filter, limit, confirm",
                              field=unknown[0])
    limit = body.get("limit", DEFAULT_LIMIT)
    if type(limit) is not int or not 1 <= limit <= MAX_LIMIT:
        raise ValidationError(f"limit must be an integer from 1 to {MAX_LIMIT}", field="limit")
    confirm = body.get("confirm")
    if dry:
        return _filter(body.get("filter")), limit, None
    if type(confirm) is not int or confirm < 0:
        raise ValidationError("confirm must be the count a dry run (?dry_run=1) reported", field="confirm")
    return _filter(body.get("filter")), limit, confirm


def _filter(value: object) -> Filter:
    if not isinstance(value, dict):
        raise ValidationError("filter must be an object", field="filter")
    unknown = sorted(set(value) - set(_FILTER_FIELDS))
    if unknown:
        raise ValidationError(f"unknown filter field {unknown[0][:64]!r}", field=f"filter.{unknown[0][:64]}")
    for name in _TEXT_FIELDS:
        if value.get(name) is not None and not isinstance(value[name], str):
            raise ValidationError(f"filter.{name} must be a string", field=f"filter.{name}")
    status: str | None = value.get("status") or None
    try:
        parsed = None if status is None else TaskStatus(status)
    except ValueError:
        raise ValidationError(f"filter.status is not a status: {str(status)[:64]!r}", field="filter.status") from None
    return Filter(status=parsed, type=value.get("type") or None, queue=value.get("queue") or None,
                  search=value.get("search") or None,
                  priority=filters.priority(value.get("priority"), "filter.priority"),
                  created_after=filters.moment(value.get("created_after"), "filter.created_after"),
                  created_before=filters.moment(value.get("created_before"), "filter.created_before"))


def bulk_result_to_dict(result: BulkResult, *, dry: bool) -> dict[str, Any]:
    answer: dict[str, Any] = {"dry_run": dry, "matched": result.matched, "scanned": result.scanned,
                              "complete": result.complete}
    if dry:
        return answer | {"confirm": result.matched}
    return answer | {"done": result.done, "pending": result.pending, "skipped": result.skipped}

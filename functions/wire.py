"""The wire format: JSON bodies and query strings into service requests, and results back to JSON.

Parsing checks shapes and types (unknown fields, wrong types, field paths); the services check
domain limits (ranges, names, registered types). Both raise hexq.core.errors.ValidationError, so a
client sees one kind of 422 whichever layer noticed.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, TypeVar

import orjson
from starlette.datastructures import QueryParams
from starlette.responses import JSONResponse

from hexq.core.backpressure import Pressure
from hexq.core.codec import attempt_to_dict, schedule_to_dict, task_to_dict
from hexq.core.errors import ValidationError
from hexq.core.model import (
    JSON,
    Attempt,
    AttemptOutcome,
    Page,
    Priority,
    Stats,
    Task,
    TaskQuery,
    TaskStatus,
    WorkerInfo,
)
from hexq.core.queues import QueueInfo
from hexq.core.schedule import Schedule
from hexq.core.services import SubmitRequest, Submitted
from hexq.functions import filters

SUBMIT_FIELDS = ("type", "payload", "priority", "queue", "delay", "run_at", "max_attempts", "timeout",
                 "idempotency_key")
SCHEDULE_FIELDS = ("spec", "type", "payload", "queue", "priority", "enabled")
MAX_REPLAY = 1000
DEFAULT_LIMIT = 50
_CURSOR = re.compile(r"^[A-Za-z0-9_.:=+/-]{1,256}$")
R = TypeVar("R", Task, Schedule)
MAX_RENDER_DEPTH = 200  # deeper than any body is allowed (functions/body.py), shallower than the stack


class JSONOut(JSONResponse):
    """JSONResponse that cannot fail on a stored value, whoever wrote it (an older version, a hand edit).

    What JSON cannot hold (NaN, infinity, an integer past Python's 4300 digits, a type JSON does not
    know, nesting past MAX_RENDER_DEPTH) is shown as null, and unpaired surrogates as \\u escapes.
    Rendered by orjson; what it refuses (an integer past 64 bits, a key that is not a string, a surrogate)
    takes the slow path, which shows it as the json module would.
    """

    def render(self, content: Any) -> bytes:
        try:
            return orjson.dumps(content)
        except Exception:  # orjson.JSONEncodeError (a TypeError), RecursionError: one slow path
            return json.dumps(plain(content), allow_nan=False, separators=(",", ":")).encode("ascii")


def plain(value: object, depth: int = 0) -> JSON:
    """`value` as data json.dumps(allow_nan=False) always accepts: anything else becomes None."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value if _printable(value) else None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if depth >= MAX_RENDER_DEPTH:
        return None
    if isinstance(value, Mapping):
        return {k if isinstance(k, str) else json.dumps(plain(k, depth + 1)): plain(v, depth + 1)
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item, depth + 1) for item in value]
    return None


def _printable(number: int) -> bool:
    try:
        int.__repr__(number)  # past sys.get_int_max_str_digits() this raises, and json.dumps would too
    except ValueError:
        return False
    return True


# -- requests -----------------------------------------------------------------------------------
def submit_request(body: Mapping[str, Any], *, tenant: str, header_key: str | None = None) -> SubmitRequest:
    _only(body, SUBMIT_FIELDS)
    return SubmitRequest(
        type=_required(body, "type"),
        payload=_payload(body),
        priority=_priority(body),
        queue=_str(body, "queue"),
        delay=_number(body.get("delay"), "delay"),
        run_at=_run_at(body.get("run_at")),
        max_attempts=_int(body, "max_attempts"),
        timeout=_number(body.get("timeout"), "timeout"),
        idempotency_key=_idempotency_key(body, header_key),
        tenant=tenant,
    )


def bulk_requests(body: Mapping[str, Any], *, tenant: str) -> list[SubmitRequest]:
    _only(body, ("tasks",))
    items = body.get("tasks")
    if not isinstance(items, list):
        raise ValidationError("tasks must be an array of task objects", field="tasks")
    return [_bulk_item(i, item, tenant) for i, item in enumerate(items)]


@dataclass(frozen=True, slots=True)
class SchedulePut:
    spec: str
    type: str
    payload: Mapping[str, JSON]
    queue: str
    priority: Priority
    enabled: bool


def schedule_put(body: Mapping[str, Any]) -> SchedulePut:
    _only(body, SCHEDULE_FIELDS)
    enabled = body.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ValidationError("enabled must be true or false", field="enabled")
    return SchedulePut(spec=_required(body, "spec"), type=_required(body, "type"),
                       payload=_payload(body), queue=_str(body, "queue") or "default", priority=_priority(body),
                       enabled=enabled)


def replay_ids(body: Mapping[str, Any]) -> list[str]:
    _only(body, ("ids",))
    ids = body.get("ids")
    if not isinstance(ids, list) or not 1 <= len(ids) <= MAX_REPLAY:
        raise ValidationError(f"ids must be an array of 1 to {MAX_REPLAY} task ids", field="ids")
    for i, task_id in enumerate(ids):
        if not isinstance(task_id, str):
            raise ValidationError("a task id must be a string", field=f"ids[{i}]")
    return ids


def task_query(params: QueryParams, *, tenant: str | None, status: TaskStatus | None = None) -> TaskQuery:
    """GET filters. Empty values count as absent; `status` fixes the status (the dead-letter view)."""
    return TaskQuery(status=status or _status(params.get("status") or None), type=params.get("type") or None,
                     queue=params.get("queue") or None, tenant=tenant, limit=_limit(params.get("limit") or None),
                     cursor=_cursor(params.get("cursor") or None), search=params.get("search") or None,
                     priority=filters.priority(params.get("priority")),
                     created_after=filters.moment(params.get("created_after"), "created_after"),
                     created_before=filters.moment(params.get("created_before"), "created_before"))


# -- responses ----------------------------------------------------------------------------------
def task_view(task: Task) -> dict[str, Any]:
    """The task as a response shows it. Any stored record renders: see _fallback."""
    view = _view(task_to_dict, task)
    view.pop("history", None)
    view["attempts_history"] = attempts_history(task)
    return view


def attempts_history(task: Task) -> list[dict[str, Any]]:
    """Every attempt the task keeps, oldest first, and the one under way or that succeeded, which is never
    stored (the task's own fields describe it: hexq.core.model.Task.history)."""
    try:
        shown = [attempt_to_dict(attempt) for attempt in task.history]
        if task.status in _SYNTHESISED and task.started_at is not None:
            shown.append(attempt_to_dict(Attempt(
                task.attempts, _SYNTHESISED[task.status], task.worker_id, None, task.started_at,
                task.finished_at if task.status is TaskStatus.SUCCEEDED else None)))
    except Exception:  # a record the codec chokes on shows no history rather than failing the response
        return []
    return shown


_SYNTHESISED = {TaskStatus.RUNNING: AttemptOutcome.RUNNING, TaskStatus.SUCCEEDED: AttemptOutcome.SUCCEEDED}


def schedule_view(schedule: Schedule) -> dict[str, Any]:
    """The schedule as a response shows it. Any stored record renders: see _fallback."""
    return _view(schedule_to_dict, schedule)


def submitted_response(submitted: Submitted) -> JSONOut:
    """202 for a new task; 200 and `Idempotent-Replayed: true` when the key returned an earlier one."""
    headers = {"Location": f"/v1/tasks/{submitted.task.id}"}
    if not submitted.created:
        headers["Idempotent-Replayed"] = "true"
    return JSONOut(task_view(submitted.task), status_code=202 if submitted.created else 200, headers=headers)


def page_to_dict(page: Page) -> dict[str, Any]:
    return {"tasks": [task_view(task) for task in page.items], "next_cursor": page.next_cursor,
            "scanned": page.scanned, "complete": page.complete}


def stats_to_dict(stats: Stats, pressures: Sequence[Pressure] = ()) -> dict[str, Any]:
    """`pressures`: the queues with back-pressure caps (TaskService.pressures), as this process sees them."""
    return {
        "by_status": {str(status): n for status, n in stats.by_status.items()},
        "queued": {queue: {level.name.lower(): n for level, n in levels.items()}
                   for queue, levels in stats.queued.items()},
        "backlog": stats.backlog,
        "depth": [{"queue": queue, "priority": level.name.lower(), "state": state, "count": n}
                  for (queue, level, state), n in sorted(stats.depth.items()) if n],
        "oldest_age": [{"queue": queue, "priority": level.name.lower(), "seconds": max(seconds, 0.0)}
                       for (queue, level), seconds in sorted(stats.oldest_age.items())],
        "paused": sorted(stats.paused),
        "backpressure": [pressure_view(p) for p in pressures],
    }


def pressure_view(p: Pressure) -> dict[str, Any]:
    return {"queue": p.queue, "overloaded": p.overloaded, "reason": p.reason, "backlog": p.load.backlog,
            "max_backlog": p.max_backlog, "oldest_age": round(p.load.oldest_age, 3), "max_oldest_age": p.max_oldest_age,
            "drain_rate": round(p.load.drain_rate, 3), "retry_after": math.ceil(p.retry_after)}


def queues_to_dict(queues: Sequence[QueueInfo]) -> dict[str, Any]:
    return {"queues": [queue_view(queue) for queue in queues]}


def queue_view(queue: QueueInfo) -> dict[str, Any]:
    return {"name": queue.name, "paused": queue.paused, "depth": queue.depth, "running": queue.running,
            "scheduled": queue.scheduled, "dead": queue.dead}

def workers_to_dict(workers: Sequence[WorkerInfo]) -> dict[str, Any]:
    return {"workers": [{"id": w.id, "host": w.host, "pid": w.pid, "queues": list(w.queues),
                         "started_at": w.started_at, "last_seen": w.last_seen, "running": w.running}
                        for w in workers]}


def schedules_to_dict(schedules: Sequence[Schedule]) -> dict[str, Any]:
    return {"schedules": [schedule_view(schedule) for schedule in schedules]}


def _view(to_dict: Callable[[R], dict[str, Any]], record: R) -> dict[str, Any]:
    """`to_dict(record)` with each field of a documented kind (_KINDS) shown only if it is of that kind.
    A record the codec chokes on goes through _fallback: one bad record must not fail a whole listing."""
    try:
        view = to_dict(record)
    except Exception:
        view = _fallback(record)
    for name, value in view.items():
        if value is not None and not _of_kind(name, value):  # None is null whatever the kind
            view[name] = None
    return view


def _of_kind(name: str, value: object) -> bool:
    if type(value) is str and name in _TEXT:  # the common case, without a call
        return True
    kind = _KINDS.get(name)
    return kind is None or kind(value)


def _fallback(record: Task | Schedule) -> dict[str, Any]:
    """The codec's dict (every field, enums by name) where a payload, priority or status is not one: null."""
    view: dict[str, Any] = {f.name: getattr(record, f.name, None) for f in fields(record)}
    view["payload"] = dict(view["payload"]) if isinstance(view["payload"], Mapping) else None
    view["priority"] = _shown(lambda: Priority.parse(view["priority"]).name.lower())
    if "status" in view:
        view["status"] = _shown(lambda: TaskStatus(view["status"]).value)
    return view


def _shown(render: Callable[[], str]) -> str | None:
    try:
        return render()
    except Exception:
        return None


def _is_number(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True  # exact; math.isfinite(10**400) would raise OverflowError
    return isinstance(value, float) and math.isfinite(value)


def _is_integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# Each response field's kind, as functions/openapi.py documents it. A stored value of another kind (NaN or
# infinity from an overflow, text where a time belongs) is shown as null; payload, priority and status
# are _fallback's. Values nested in payload and result are JSONOut's.
_TEXT = frozenset(("id", "name", "spec", "type", "queue", "tenant", "worker_id", "error", "traceback",
                   "idempotency_key"))
_KINDS: Mapping[str, Callable[[object], bool]] = {
    **dict.fromkeys(_TEXT, lambda value: isinstance(value, str)),
    **dict.fromkeys(("timeout", "run_at", "delay", "created_at", "started_at", "finished_at", "next_run",
                     "last_run"), _is_number),
    **dict.fromkeys(("attempts", "max_attempts"), _is_integer),
    "enabled": lambda value: isinstance(value, bool),
}


# -- field helpers ------------------------------------------------------------------------------
def _only(body: Mapping[str, Any], allowed: Sequence[str]) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise ValidationError(f"unknown field {unknown[0][:64]!r}; allowed fields: {', '.join(allowed)}",
                              field=unknown[0])


def _bulk_item(index: int, item: object, tenant: str) -> SubmitRequest:
    """One element of a bulk submit; its errors name it, as in `tasks[3].priority`."""
    name = f"tasks[{index}]"
    try:
        if not isinstance(item, dict):
            raise ValidationError("must be a JSON object")
        return submit_request(item, tenant=tenant)
    except ValidationError as exc:
        raise type(exc)(f"{name}: {exc}", field=f"{name}.{exc.field}" if exc.field else name) from None


def _required(body: Mapping[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str):
        raise ValidationError(f"{name} is required and must be a string", field=name)
    return value


def _str(body: Mapping[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise ValidationError(f"{name} must be a string", field=name)
    return value


def _payload(body: Mapping[str, Any]) -> dict[str, JSON]:
    payload = body.get("payload")
    if payload is None:
        return {}
    if not isinstance(payload, dict):
        raise ValidationError("payload must be a JSON object", field="payload")
    return payload


def _priority(body: Mapping[str, Any]) -> Priority:
    value = body.get("priority")
    return Priority.NORMAL if value is None else Priority.parse(value)


def _number(value: object, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(f"{name} must be a number of seconds", field=name)
    try:
        return float(value)
    except OverflowError:  # an integer with hundreds of digits
        raise ValidationError(f"{name} is out of range", field=name) from None


def _int(body: Mapping[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValidationError(f"{name} must be an integer", field=name)
    return value


def _run_at(value: object) -> float | None:
    """Epoch seconds, or an ISO-8601 time (a time without an offset is taken as UTC): filters.moment, the one
    parser of times the API and the CLI share."""
    if isinstance(value, str) and value:
        return filters.moment(value, "run_at")
    return _number(value, "run_at")


def _idempotency_key(body: Mapping[str, Any], header: str | None) -> str | None:
    key = _str(body, "idempotency_key")
    if header is not None and key is not None and header != key:
        raise ValidationError("the Idempotency-Key header and the body's idempotency_key differ",
                              field="idempotency_key")
    return key if key is not None else header


def _status(value: str | None) -> TaskStatus | None:
    if value is None:
        return None
    try:
        return TaskStatus(value)
    except ValueError:
        allowed = ", ".join(s.value for s in TaskStatus)
        raise ValidationError(f"status must be one of {allowed}, not {value[:64]!r}", field="status") from None


def seconds_param(raw: str | None, field: str, low: float, high: float, *, above_low: bool = False) -> float | None:
    """A query parameter in seconds (`?wait=`, `?within=`): None when absent, else a number from `low` (or above it,
    `above_low`) to `high`; anything else, NaN and infinity included, a 422 naming `field`."""
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not (low < seconds <= high if above_low else low <= seconds <= high):
        bound = f"above {low:g}" if above_low else f"from {low:g}"
        raise ValidationError(f"{field} must be a number of seconds {bound} and at most {high:g}, not {raw[:64]!r}",
                              field=field)
    return seconds


def _limit(value: str | None) -> int:
    if value is None:
        return DEFAULT_LIMIT
    try:
        return int(value)
    except ValueError:
        raise ValidationError(f"limit must be an integer, not {value[:64]!r}", field="limit") from None


def _cursor(value: str | None) -> str | None:
    if value is not None and not _CURSOR.match(value):
        raise ValidationError("cursor is not one this API returned", field="cursor")
    return value

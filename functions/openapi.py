"""The OpenAPI 3.1 document of the HTTP API, served at /openapi.json.

Written by hand as data (not generated from the handlers) so that it is the reviewed contract;
tests/functions checks it against the OpenAPI schema and against the app's routes.
"""

from __future__ import annotations

import copy
from typing import Any

from hexq.core.bulk import MAX_LIMIT as BULK_MAX
from hexq.core.model import HISTORY_LIMIT, STATES, AttemptOutcome, Priority, TaskStatus
from hexq.core.outcome import MAX_ATTEMPT_ERROR, MAX_ATTEMPT_TRACEBACK
from hexq.core.schedule import MAX_FIRE_TIME
from hexq.core.search import MAX_SEARCH
from hexq.core.services import Limits
from hexq.functions.body import MAX_DEPTH
from hexq.functions.wire import MAX_REPLAY

Schema = dict[str, Any]

_LIMITS = Limits()  # the defaults TaskService enforces
_LATEST = f"{MAX_FIRE_TIME:.0f} (9999-12-31T23:59:59Z)"
# Records are read back as stored, and an older version (or a hand edit) may have stored anything.
_AS_STORED = ("A field whose stored value is not of its documented type (NaN or infinity where a number belongs, "
              "left by an older version or a hand edit) is shown as null; so are numbers in payload and result "
              "that JSON cannot hold.")
_STATUSES = [s.value for s in TaskStatus]
_SEARCH_SCHEMA: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": MAX_SEARCH}
_PRIORITY_NAMES = [p.name.lower() for p in Priority]
# The listing filters (GET /v1/tasks, GET /v1/dead, the bulk filter): hexq.functions.filters.
_LEVEL: Schema = {"description": "Only tasks of this priority: a level name or 0 (low) to 3 (critical).",
                  "oneOf": [{"type": "string", "enum": _PRIORITY_NAMES},
                            {"type": "integer", "minimum": 0, "maximum": 3}]}
_MOMENT: Schema = {"oneOf": [{"type": "number"}, {"type": "string", "format": "date-time"}]}
_AFTER = ("Only tasks created at or after this time: epoch seconds or an ISO-8601 time (UTC when it has no offset), "
          "on the backend's clock.")
_BEFORE = "Only tasks created before this time (the window is half-open): epoch seconds or an ISO-8601 time."


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(kind: str, **extra: Any) -> Schema:
    return {"type": [kind, "null"], **extra}


def _obj(properties: dict[str, Schema], required: list[str], *, closed: bool = True, **extra: Any) -> Schema:
    schema: Schema = {"type": "object", "properties": properties, "required": required, **extra}
    if closed:
        schema["additionalProperties"] = False
    return schema


def _json(schema: Schema, description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        response["headers"] = headers
    return response


def _errors(*statuses: int) -> dict[str, Any]:
    names = {400: "BadJSON", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 409: "Conflict",
             413: "TooLarge", 422: "Invalid", 429: "TooMany", 503: "Unavailable"}
    return {str(status): {"$ref": f"#/components/responses/{names[status]}"} for status in statuses}


# Either header carries the key; an operation lists both as alternatives.
_SECURITY: list[dict[str, list[str]]] = [{"bearerKey": []}, {"headerKey": []}]
_SECURITY_SCHEMES = {
    "bearerKey": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <API key>."},
    "headerKey": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "X-API-Key: <API key>."},
}


_HISTOGRAM = _obj({
    "by": {"type": "string", "description": "The label the series are split by (priority, status)."},
    "series": {"type": "object", "additionalProperties": _obj({
        "bounds": {"type": "array", "items": {"type": "number"}, "description": "Upper bounds, seconds."},
        "counts": {"type": "array", "items": {"type": "integer"}, "description": "Per bucket, not cumulative; one "
                   "more than bounds (the last is above the highest bound)."},
        "count": {"type": "integer"}, "sum": {"type": "number"},
        "p50": {"type": ["number", "null"]}, "p95": {"type": ["number", "null"]}, "p99": {"type": ["number", "null"]},
    }, ["bounds", "counts", "count", "sum", "p50", "p95", "p99"])},
}, ["by", "series"])


def _op(op_id: str, summary: str, responses: dict[str, Any], *, params: list[Any] | None = None,
        body: Schema | None = None, tag: str = "tasks", scope: str | None = None) -> dict[str, Any]:
    """An operation; with a `scope`, a protected one: security schemes, the scope in its description,
    and the 401/403/429 every protected operation can answer."""
    if scope is not None:
        responses = {**responses, **_errors(401, 403, 429)}
    operation: dict[str, Any] = {"operationId": op_id, "summary": summary, "tags": [tag], "responses": responses}
    if scope is not None:
        operation["security"] = _SECURITY
        operation["description"] = f"Needs an API key with the `{scope}` scope (or `admin`) when keys are configured."
    if params:
        operation["parameters"] = params
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return operation


def _param(name: str, where: str, schema: Schema, description: str, *, required: bool = False) -> dict[str, Any]:
    param = {"name": name, "in": where, "required": required or where == "path", "schema": schema,
             "description": description}
    if where == "query":  # functions/wire.py reads `?status=` as no status filter, like a form left blank
        param |= {"allowEmptyValue": True, "description": f"{description} Empty means absent."}
    return param


_PRIORITY: Schema = {
    "description": "A level name, 0 (low) to 3 (critical), or a boolean (true means high, false normal).",
    "oneOf": [{"type": "string", "enum": _PRIORITY_NAMES}, {"type": "integer", "minimum": 0, "maximum": 3},
              {"type": "boolean"}],
}
_SUBMIT: Schema = _obj({
    "type": {"type": "string", "description": "A registered task type."},
    "payload": {"type": "object", "default": {}, "description": "Passed to the handler."},
    "priority": _PRIORITY,
    "queue": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$"},
    "delay": {"type": "number", "minimum": 0, "description": "Seconds from now; not with run_at."},
    "run_at": {"description": "Epoch seconds or an ISO-8601 time (UTC when it has no offset); not with delay.",
               "oneOf": [{"type": "number", "minimum": 0}, {"type": "string", "format": "date-time"}]},
    "max_attempts": {"type": "integer", "minimum": 1, "maximum": _LIMITS.max_attempts},
    "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": _LIMITS.max_timeout},
    "idempotency_key": {"type": "string", "minLength": 1, "maxLength": _LIMITS.max_key_length,
                        "description": "Resubmitting with the same key returns the first task (200)."},
}, ["type"], description="Null for an optional field means its default. Unknown fields are rejected (422).")

_ATTEMPT: Schema = _obj({
    "number": {"type": "integer", "description": "1 for the first attempt."},
    "outcome": {"type": "string", "enum": [o.value for o in AttemptOutcome], "description": (
        "retried: failed, retried after `delay`; dead: failed, dead-lettered; cancelled: cancelled while it ran; "
        "released: given back unfinished (worker shutdown); lost: its lease expired (worker died or hung) and "
        "the poller recovered it; deferred: the handler raised Retry(after=...), so it runs again after `delay` "
        "without using an attempt; succeeded; running: under way.")},
    "worker_id": _nullable("string"),
    "token": _nullable("integer", description="The lease's fencing token; null where not known (a lost "
                       "attempt's, the running or succeeded one)."),
    "started_at": _nullable("number", description="Epoch seconds on the backend's clock (the claim's)."),
    "finished_at": _nullable("number", description="started_at plus the duration the worker measured; a lost "
                             "attempt's is when the poller took it over. Null while running."),
    "error": _nullable("string", description=f"Its first {MAX_ATTEMPT_ERROR} characters."),
    "traceback": _nullable("string", description=f"Its last {MAX_ATTEMPT_TRACEBACK} characters."),
    "delay": _nullable("number", description="The backoff chosen, in seconds, when retried."),
}, ["number", "outcome", "worker_id", "token", "started_at", "finished_at", "error", "traceback", "delay"])

_LEASE: Schema = _obj({
    "task_id": {"type": "string"}, "type": {"type": "string"}, "queue": {"type": "string"},
    "worker_id": _nullable("string"), "token": {"type": "integer", "description": "The fencing token."},
    "expires_at": {"type": "number", "description": "Epoch seconds, on the backend's clock."},
    "seconds_left": {"type": "number", "description": "expires_at minus the backend's now; negative once "
                     "expired (the poller takes the task back on its next sweep)."},
    "last_heartbeat": {"type": "number", "description": "An estimate: expires_at minus lease_seconds (a heartbeat "
                       "sets the expiry to now + the lease), no earlier than the start and no later than now. "
                       "No backend stores the heartbeat's own time."},
    "lease_seconds": {"type": "number", "description": "This API's HEXQ_LEASE, assumed to be the workers' too."},
    "cancel_requested": {"type": "boolean"},
}, ["task_id", "type", "queue", "worker_id", "token", "expires_at", "seconds_left", "last_heartbeat",
    "lease_seconds", "cancel_requested"])

_TASK: Schema = _obj({
    "id": {"type": "string"}, "type": {"type": "string"}, "payload": {"type": "object"},
    "queue": {"type": "string"}, "priority": {"type": "string", "enum": _PRIORITY_NAMES},
    "status": {"type": "string", "enum": _STATUSES}, "attempts": _nullable("integer"),
    "max_attempts": _nullable("integer"), "timeout": _nullable("number"),
    "run_at": _nullable("number", description="Epoch seconds, on the backend's clock: when the task is due."),
    "delay": _nullable("number", description="Seconds the last write asked the task to wait, counted from the "
                       "backend's clock: the submit's delay, or the backoff a retry chose."),
    "created_at": _nullable("number"),
    "started_at": _nullable("number"), "finished_at": _nullable("number"), "worker_id": _nullable("string"),
    "result": {"description": "The handler's JSON result, once succeeded."}, "error": _nullable("string"),
    "traceback": _nullable("string", description="The last failed attempt's traceback (its last 8 KB), beside "
                           "its error; null once the task succeeds."),
    "idempotency_key": _nullable("string"), "tenant": {"type": "string"},
    "attempts_history": {"type": "array", "items": _ATTEMPT, "description": (
        f"The task's attempts, oldest first: the last {HISTORY_LIMIT} that did not succeed (retried, dead, "
        "cancelled, released, lost), then the one running or that succeeded, shown from the task's own fields. "
        "A task replayed from the dead letters keeps its earlier attempts, numbered as they were.")},
    "lease": {**_LEASE, "description": "Only on GET /v1/tasks/{id} of a running task: its worker's lease."},
}, ["id", "type", "payload", "queue", "priority", "status", "attempts", "max_attempts", "timeout", "run_at",
    "delay", "created_at", "started_at", "finished_at", "worker_id", "result", "error", "traceback",
    "idempotency_key", "tenant", "attempts_history"],
    closed=False, description=_AS_STORED)

_SCHEDULE_PUT: Schema = _obj({
    "spec": {"type": "string", "description": "Five-field cron (UTC) or '@every 1h30m' (at least 1s). Its next "
             f"fire must come by epoch {_LATEST}, or the schedule is refused (422, details.field spec).",
             "examples": ["*/5 * * * *", "@every 1m"]},
    "type": {"type": "string"}, "payload": {"type": "object", "default": {}}, "priority": _PRIORITY,
    "queue": {"type": "string", "default": "default", "pattern": "^[A-Za-z0-9_.:-]{1,64}$"},
    "enabled": {"type": "boolean", "default": True},
}, ["spec", "type"])

_SCHEDULE: Schema = _obj({
    "name": {"type": "string"}, "spec": {"type": "string"}, "type": {"type": "string"},
    "payload": {"type": "object"}, "queue": {"type": "string"},
    "priority": {"type": "string", "enum": _PRIORITY_NAMES},
    "next_run": _nullable("number", description=f"Epoch seconds, at most {_LATEST}."),
    "last_run": _nullable("number"), "enabled": {"type": "boolean"}, "tenant": {"type": "string"},
}, ["name", "spec", "type", "payload", "queue", "priority", "next_run", "last_run", "enabled", "tenant"], closed=False,
    description=_AS_STORED)

_ERROR: Schema = _obj({
    "error": {"type": "string", "description": "A stable machine-readable code.", "enum": [
        "bad_json", "body_too_large", "validation_error", "unknown_task_type", "idempotency_mismatch", "not_found",
        "method_not_allowed", "invalid_transition", "name_taken", "backend_unavailable", "client_disconnected",
        "http_error", "internal_error", "unauthorized", "forbidden", "rate_limited", "queue_full",
        "overloaded"]},
    "message": {"type": "string", "description": "For humans; may change."},
    "details": {"type": ["object", "null"], "description": "validation errors: {field: 'tasks[3].priority'}; "
                "invalid_transition: {current, target}; backend_unavailable, rate_limited: {retry_after}; "
                "queue_full: {limit, retry_after}; forbidden: {scope}; overloaded: {queue, reason, backlog, "
                "max_backlog, oldest_age, max_oldest_age, retry_after}."},
}, ["error", "message", "details"])

_COUNTS: Schema = {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}}

_SCHEMAS: dict[str, Schema] = {
    "Error": _ERROR, "Task": _TASK, "Lease": _LEASE,
    "LeaseList": _obj({"now": {"type": "number", "description": "The backend's clock."},
                       "lease_seconds": {"type": "number"}, "leases": {"type": "array", "items": _ref("Lease")}},
                      ["now", "lease_seconds", "leases"]),
    "ExperimentList": _obj({"directory": {"type": "string"}, "runs": {"type": "array", "items": _obj({
        "name": {"type": "string"}, "run": {"type": "string"}, "started_at": _nullable("string"),
        "backend": _nullable("string"), "quick": _nullable("boolean"), "complete": _nullable("boolean"),
        "headline": {"type": "object"}, "report": _nullable("string"),
        "figures": {"type": "array", "items": {"type": "string"}}},
        ["name", "run", "started_at", "backend", "quick", "complete", "headline", "report", "figures"])}},
        ["directory", "runs"]),
    "SubmitTask": _SUBMIT, "Schedule": _SCHEDULE, "SchedulePut": _SCHEDULE_PUT,
    "TaskPage": _obj({"tasks": {"type": "array", "items": _ref("Task")},
                      "next_cursor": _nullable("string", description="Pass as ?cursor= for the next page."),
                      "scanned": {"type": "integer", "minimum": 0, "description": "Records the backend "
                                  "examined for this page ('12 matches in 40,000 scanned'), those other filters "
                                  "turned down included."},
                      "complete": {"type": "boolean", "description": "Nothing is left to examine "
                                   "(next_cursor is null). A search page may be short, even empty, and not complete: "
                                   "follow the cursor."}},
                     ["tasks", "next_cursor", "scanned", "complete"]),
    "BulkFilter": _obj({"status": {"type": "string", "enum": _STATUSES}, "type": {"type": "string"},
                        "queue": {"type": "string"}, "search": _SEARCH_SCHEMA, "priority": _LEVEL,
                        "created_after": _MOMENT | {"description": _AFTER},
                        "created_before": _MOMENT | {"description": _BEFORE}}, []),
    "BulkRequest": _obj({"filter": _ref("BulkFilter"),
                         "limit": {"type": "integer", "minimum": 1, "maximum": BULK_MAX, "default": 1000},
                         "confirm": {"type": "integer", "minimum": 0, "description": "The `matched` count of a dry "
                                     "run (?dry_run=1): the most tasks this request may act on. If more match now, "
                                     "409 confirm_mismatch and nothing changes. Not needed on a dry run."}},
                        ["filter"]),
    "BulkResult": _obj({"dry_run": {"type": "boolean"}, "matched": {"type": "integer"}, "scanned": {"type": "integer"},
                        "complete": {"type": "boolean", "description": "The walk reached the end of the filter; "
                                     "false: more may match (past `limit`, or past 100,000 records examined)."},
                        "confirm": {"type": "integer", "description": "Dry run: pass back as `confirm`."},
                        "done": {"type": "integer", "description": "Cancelled (or replayed)."},
                        "pending": {"type": "integer", "description": "Running tasks whose worker was asked to stop."},
                        "skipped": {"type": "integer",
                                    "description": "Tasks that moved on before they were acted on."}},
                       ["dry_run", "matched", "scanned", "complete"]),
    "TaskList": _obj({"tasks": {"type": "array", "items": _ref("Task")}}, ["tasks"]),
    "BulkSubmit": _obj({"tasks": {"type": "array", "items": _ref("SubmitTask"), "minItems": 1,
                                    "maxItems": _LIMITS.max_bulk}},
                       ["tasks"]),
    "Replay": {"oneOf": [_obj({"ids": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                                       "maxItems": MAX_REPLAY}}, ["ids"]), _ref("BulkRequest")]},
    "Replayed": _obj({"replayed": {"type": "array", "items": _ref("Task")}}, ["replayed"]),
    "ScheduleList": _obj({"schedules": {"type": "array", "items": _ref("Schedule")}}, ["schedules"]),
    "Stats": _obj({
        "by_status": {**_COUNTS, "propertyNames": {"enum": _STATUSES}},
        "queued": {"type": "object", "description": "Queued tasks by queue, then by priority name.",
                   "additionalProperties": {**_COUNTS, "propertyNames": {"enum": _PRIORITY_NAMES}}},
        "backlog": {"type": "integer", "minimum": 0, "description": "All queued tasks."},
        "depth": {"type": "array", "description": "Tasks by queue, priority and state (queued, running, scheduled, "
                  "dead); only the places that hold some.", "items": _obj({
                      "queue": {"type": "string"}, "priority": {"type": "string", "enum": _PRIORITY_NAMES},
                      "state": {"type": "string", "enum": list(STATES)},
                      "count": {"type": "integer", "minimum": 1}}, ["queue", "priority", "state", "count"])},
        "oldest_age": {"type": "array", "description": "Seconds the oldest queued task of a queue and priority has "
                       "waited since it became eligible (the later of created_at and run_at), on the backend's "
                       "clock.", "items": _obj({
                           "queue": {"type": "string"}, "priority": {"type": "string", "enum": _PRIORITY_NAMES},
                           "seconds": {"type": "number", "minimum": 0}}, ["queue", "priority", "seconds"])},
        "paused": {"type": "array", "items": {"type": "string"}, "description": "Paused queues, by name: workers "
                   "claim none of their tasks (which the counts above still include)."},
        "backpressure": {"type": "array", "description": "Every queue with a back-pressure cap (HEXQ_MAX_BACKLOG, "
                         "HEXQ_MAX_OLDEST_AGE) as the answering process sees it (read at most a second ago); empty "
                         "when no cap is set.", "items": _ref("Pressure")},
    }, ["by_status", "queued", "backlog", "depth", "oldest_age", "paused"]),
    "Pressure": _obj({
        "queue": {"type": "string"},
        "overloaded": {"type": "boolean", "description": "Submits to the queue get 503 overloaded now."},
        "reason": {"type": ["string", "null"], "enum": ["backlog", "oldest_age", None]},
        "backlog": {"type": "integer", "minimum": 0, "description": "Queued tasks."},
        "max_backlog": {"type": "integer", "minimum": 0, "description": "Its cap; 0: none."},
        "oldest_age": {"type": "number", "minimum": 0, "description": "Seconds the oldest queued task has waited."},
        "max_oldest_age": {"type": "number", "minimum": 0, "description": "Its cap; 0: none."},
        "drain_rate": {"type": "number", "minimum": 0, "description": "Tasks leaving the queue per second, "
                       "measured over the last 10 s (a lower bound)."},
        "retry_after": {"type": "integer", "minimum": 0, "description": "Seconds a refused submit is told to wait "
                        "(1 to 60); 0 when not overloaded."},
    }, ["queue", "overloaded", "reason", "backlog", "max_backlog", "oldest_age", "max_oldest_age", "drain_rate",
        "retry_after"]),
    "Queue": _obj({
        "name": {"type": "string"},
        "paused": {"type": "boolean", "description": "Workers claim none of its tasks; submits are still accepted."},
        "depth": {"type": "integer", "minimum": 0, "description": "Queued tasks: ready now, or once resumed."},
        "running": {"type": "integer", "minimum": 0},
        "scheduled": {"type": "integer", "minimum": 0, "description": "Delayed tasks and retries not yet due."},
        "dead": {"type": "integer", "minimum": 0},
    }, ["name", "paused", "depth", "running", "scheduled", "dead"]),
    "Histograms": _obj({
        "metrics": {"type": "boolean", "description": "False with HEXQ_METRICS=off: then nothing else is given."},
        "multiprocess": {"type": "boolean", "description": "True when every `hexq serve` process is counted."},
        "queue_wait": _HISTOGRAM, "duration": _HISTOGRAM,
        "lease_recoveries": {"type": "number"}, "fencing_rejections": {"type": "number"},
    }, ["metrics"]),
    "WhyWaiting": _obj({
        "id": {"type": "string"}, "status": {"type": "string"},
        "reasons": {"type": "array", "items": _obj({
            "kind": {"type": "string", "enum": ["delayed", "paused", "no_worker", "ahead", "rate_limit",
                                                "concurrency", "tenant_cap"]},
            "message": {"type": "string"}}, ["kind", "message"], closed=False)},
    }, ["id", "status", "reasons"]),
    "QueueList": _obj({"queues": {"type": "array", "items": _ref("Queue")}}, ["queues"]),
    "Breaker": _obj({
        "name": {"type": "string", "description": "Its own name, or the task type's it guards."},
        "state": {"type": "string", "enum": ["closed", "open", "half_open"], "description": (
            "closed: tasks run; open: workers give its tasks back unrun, with the attempt unused; half_open: one "
            "probe task runs at a time, and its success closes it.")},
        "forced": {"type": "boolean", "description": "Opened by an admin: stays open until closed by one."},
        "opened_at": _nullable("number", description="When it opened, on the backend's clock; null when closed."),
        "reopens_at": _nullable("number", description="When an open breaker lets a probe through; null when "
                                "forced, closed or half-open, or when this server does not know its policy."),
        "failures": {"type": "integer", "minimum": 0, "description": "Consecutive failures counted while closed."},
        "recent_failures": {"type": "integer", "minimum": 0, "description": "Failures in its ratio window."},
        "recent": {"type": "integer", "minimum": 0, "description": "Outcomes in its ratio window."},
        "types": {"type": "array", "items": {"type": "string"}, "description": "Task types this server knows that "
                  "use it."},
        "policy": {"description": "Its settings as the task types declare them; null when this server does not "
                   "know them.", "oneOf": [{"type": "null"}, _obj({
                       "failures": {"type": "integer"}, "ratio": {"type": "number"}, "window": {"type": "integer"},
                       "reset": {"type": "number"}, "successes": {"type": "integer"}},
                       ["failures", "ratio", "window", "reset", "successes"])]},
    }, ["name", "state", "forced", "opened_at", "reopens_at", "failures", "recent_failures", "recent", "types",
        "policy"]),
    "BreakerList": _obj({"breakers": {"type": "array", "items": _ref("Breaker")}}, ["breakers"]),
    "QueuePaused": _obj({
        "queue": {"type": "string"},
        "paused": {"type": "boolean", "description": "Whether the queue is paused now."},
        "changed": {"type": "boolean", "description": "False when it already was (pause and resume are "
                    "idempotent)."},
    }, ["queue", "paused", "changed"]),
    "Worker": _obj({
        "id": {"type": "string"}, "host": {"type": "string"}, "pid": {"type": "integer"},
        "queues": {"type": "array", "items": {"type": "string"}},
        "started_at": {"type": "number", "description": "When it registered: seconds since the epoch, the "
                       "backend's clock."},
        "last_seen": {"type": "number", "description": "Its last beat, on the backend's clock."},
        "running": {"type": "integer", "minimum": 0, "description": "Tasks it ran at its last beat."},
    }, ["id", "host", "pid", "queues", "started_at", "last_seen", "running"]),
    "WorkerList": _obj({"workers": {"type": "array", "items": _ref("Worker")}}, ["workers"]),
    "TypeList": _obj({"types": {"type": "array", "items": _obj({
        "name": {"type": "string"}, "queue": {"type": "string", "description": "Where its tasks go by default."},
        "max_attempts": {"type": "integer", "minimum": 1}, "timeout": {"type": "number"},
        "rate": _nullable("number", description="Starts a second across all workers; null: no limit."),
        "concurrency": _nullable("integer", description="At once in one worker process; null: no limit."),
        "validates": {"type": "boolean", "description": "Whether a validate function checks payloads at submit "
                      "(its refusals are 422 with details.field payload)."},
    }, ["name", "queue", "max_attempts", "timeout", "rate", "concurrency", "validates"])}}, ["types"]),
    "WhoAmI": {"description": "The caller's API key (never its secret); null when the API has no keys.",
               "oneOf": [{"type": "null"}, _obj({
                   "name": {"type": "string"}, "tenant": {"type": "string", "description": "'*': every tenant."},
                   "scopes": {"type": "array", "items": {"type": "string", "enum": ["submit", "read", "admin"]}},
               }, ["name", "tenant", "scopes"])]},
    "Event": _obj({
        "event": {"type": "string", "enum": ["snapshot", "error"]},
        "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": {"oneOf": [
            _obj({"at": {"type": "number", "description": "When it was read: epoch seconds, the server's clock."},
                  "stats": _ref("Stats"), "workers": {"type": "array", "items": _ref("Worker")},
                  "histograms": _ref("Histograms")},
                 ["at", "stats", "workers"]),
            _obj({"message": {"type": "string"}}, ["message"])]}},
    }, ["event", "data"], closed=False, description="One server-sent event (the schema describes each event of the "
       "stream): `snapshot` with {at, stats, workers, histograms} as JSON, or `error` with {message} when a read "
       "failed."),
    "Status": _obj({"status": {"type": "string", "enum": ["ok", "ready"]}}, ["status"]),
    "Index": {"type": "object", "properties": {"name": {"type": "string"},
                                               "links": {"type": "object",
                                                         "additionalProperties": {"type": "string"}}}},
}

_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}}
_ERR = _ref("Error")
_RESPONSES: dict[str, Any] = {
    "BadJSON": _json(_ERR, f"bad_json: not UTF-8, not one JSON object, NaN/Infinity, or nested over {MAX_DEPTH}."),
    "TooLarge": _json(_ERR, "body_too_large: the body passed the size cap (counted while reading)."),
    "Invalid": _json(_ERR, "validation_error (details.field names the field; `payload` when the task type's "
                     "validate function refused it, `spec` when a schedule would not fire again by "
                     f"{_LATEST}), unknown_task_type, or idempotency_mismatch."),
    "NotFound": _json(_ERR, "not_found: no such task or schedule (or another tenant's)."),
    "Conflict": _json(_ERR, "invalid_transition: e.g. cancelling a task that has finished; name_taken: "
                      "another tenant has a schedule of that name."),
    "Unauthorized": _json(_ERR, "unauthorized: no API key, an unknown one or a revoked one (one answer for all).",
                          {"WWW-Authenticate": {"description": "Bearer realm=\"hexq\"", "schema": {"type": "string"}}}),
    "Forbidden": _json(_ERR, "forbidden: the key lacks the scope this operation needs (details.scope)."),
    "TooMany": _json(_ERR, "rate_limited: the key's request rate is used up; queue_full (submits): the tenant "
                     "has HEXQ_MAX_QUEUED_PER_TENANT tasks waiting. Retry after Retry-After seconds.", _RETRY_AFTER),
    "Unavailable": _json(_ERR, "backend_unavailable: retry after Retry-After seconds.", _RETRY_AFTER),
    "Overloaded": _json(_ERR, "backend_unavailable: retry after Retry-After seconds; overloaded (submits): the "
                        "queue is past a back-pressure cap (HEXQ_MAX_BACKLOG, HEXQ_MAX_OLDEST_AGE), the same for "
                        "every caller, and nothing was enqueued (a bulk submit is refused whole). Retry after "
                        "Retry-After seconds (1 to 60, from the queue's measured drain rate); details has the "
                        "figures, and the headers X-Hexq-Backlog (queued tasks) and X-Hexq-Backlog-Cap (its cap, "
                        "when it has one) repeat them.", _RETRY_AFTER),
}

_ID = _param("id", "path", {"type": "string"}, "Task id.")
_QUEUE_NAME = _param("queue", "path", {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$"}, "Queue name.")
_BREAKER_NAME = _param("name", "path", {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$"},
                       "Breaker name (a task type's, unless the type names a shared one).")
_NAME = _param("name", "path", {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$"}, "Schedule name.")
_LIMIT = _param("limit", "query", {"type": "integer", "minimum": 1, "maximum": _LIMITS.max_page, "default": 50},
                "Page size.")
_CURSOR = _param("cursor", "query", {"type": "string"}, "next_cursor from the previous page.")
_SEARCH = _param("search", "query", _SEARCH_SCHEMA, "Only tasks whose payload, as compact JSON (no spaces), or "
                 "error message holds this text (case-sensitive). Each page examines at most 10,000 records: a "
                 "page may come back short, even empty, with a next_cursor that continues the scan; `scanned` says "
                 "how many.")
_DRY_RUN = _param("dry_run", "query", {"type": "string", "enum": ["1", "0", "true", "false"]},
                  "1: count what matches (`matched`, to pass back as `confirm`) and change nothing.")
_TYPE = _param("type", "query", {"type": "string"}, "Only tasks of this type.")
_LEVEL_PARAM = _param("priority", "query", {"type": "string", "enum": [*_PRIORITY_NAMES, "0", "1", "2", "3"]},
                      str(_LEVEL["description"]))
_AFTER_PARAM = _param("created_after", "query", {"type": "string"}, _AFTER)
_BEFORE_PARAM = _param("created_before", "query", {"type": "string"}, _BEFORE)
_QUEUE = _param("queue", "query", {"type": "string"}, "Only tasks in this queue.")
_STATUS = _param("status", "query", {"type": "string", "enum": _STATUSES}, "Only tasks in this status.")
_WAIT = _param("wait", "query", {"type": "number", "exclusiveMinimum": 0, "maximum": _LIMITS.max_wait},
               "Seconds to wait for the task to finish (succeeded, dead or cancelled): the answer comes as soon as it "
               "has, or after this long with the task as it is then. Without it the answer comes at once. Waiting "
               "blocks on the backend where it can (Redis) and polls with backoff elsewhere; an unknown id (or "
               "another tenant's) is 404 at once.")
_KEY = _param("Idempotency-Key", "header", {"type": "string", "minLength": 1, "maxLength": 200},
              "Same as the body's idempotency_key (they must agree if both are given).")


_INDEX = {"description": "Links (JSON), or the dashboard's overview page (HTML).",
          "content": {"application/json": {"schema": _ref("Index")}, "text/html": {"schema": {"type": "string"}}}}


def _whoami() -> dict[str, Any]:
    operation = _op("whoami", "The caller's key: its name, tenant and scopes (the dashboard shows only the actions "
                    "they allow).", {"200": _json(_ref("WhoAmI"), "The key, or null."), **_errors(503)},
                    tag="dashboard", scope="any")
    operation["description"] = "Any valid API key may ask, whatever its scopes, when keys are configured."
    del operation["responses"]["403"]
    return operation


# A submit's 503: the backend's outage, or back pressure (a queue past its cap; a bulk is refused whole).
_OVERLOADED = {"503": {"$ref": "#/components/responses/Overloaded"}}


def _paths() -> dict[str, Any]:
    task = _json(_ref("Task"), "The task.")
    location = {"Location": {"description": "/v1/tasks/{id}", "schema": {"type": "string"}}}
    submit = {
        "202": _json(_ref("Task"), "Accepted: the new task.", location),
        "200": _json(_ref("Task"), "The idempotency key was seen before: the original task.", {
            **location, "Idempotent-Replayed": {"description": "Always 'true'.", "schema": {"type": "string"}}}),
        **_errors(400, 413, 422), **_OVERLOADED,
    }
    return {
        "/": {"get": _op("index", "Links to the API; the web dashboard for a browser (Accept naming text/html above "
                         "application/json).", {"200": _INDEX}, tag="meta")},
        "/healthz": {"get": _op("healthz", "The process is alive (never checks the backend).",
                                {"200": _json(_ref("Status"), "Alive.")}, tag="meta")},
        "/readyz": {"get": _op("readyz", "The backend answers a ping.",
                               {"200": _json(_ref("Status"), "Ready."), **_errors(503)}, tag="meta")},
        "/openapi.json": {"get": _op("openapi", "This document.",
                                     {"200": _json({"type": "object"}, "OpenAPI 3.1.")}, tag="meta")},
        "/metrics": {"get": _op(
            "metrics", "Prometheus metrics: task counts and latencies, and the backend's state read at the scrape.",
            {"200": {"description": "The Prometheus text format (OpenMetrics when the Accept header asks for it).",
                     "content": {"text/plain": {"schema": {"type": "string"}}}}}, tag="meta", scope="metrics")},
        "/v1/tasks": {
            "post": _op("submitTask", "Submit a task.", submit, params=[_KEY], body=_ref("SubmitTask"), scope="submit"),
            "get": _op("listTasks", "List tasks, newest first.",
                       {"200": _json(_ref("TaskPage"), "One page."), **_errors(422, 503)},
                       params=[_STATUS, _TYPE, _QUEUE, _LEVEL_PARAM, _AFTER_PARAM, _BEFORE_PARAM, _SEARCH, _LIMIT,
                               _CURSOR], scope="read"),
        },
        "/v1/tasks:cancel": {"post": _op(
            "cancelMatching", "Cancel every queued, scheduled or running task that matches a filter (running ones are "
            "stopped by their worker), up to `limit`. Count first with ?dry_run=1, then send its `matched` as "
            "`confirm`.", {"200": _json(_ref("BulkResult"), "Counts."), **_errors(400, 409, 413, 422, 503)},
            params=[_DRY_RUN], body=_ref("BulkRequest"), scope="submit")},
        "/v1/tasks:bulk": {"post": _op(
            "submitTasks", "Submit many tasks in one round trip: all or nothing.",
            {"202": _json(_ref("TaskList"), "The tasks, in request order."), **_errors(400, 413, 422),
             **_OVERLOADED}, body=_ref("BulkSubmit"), scope="submit")},
        "/v1/tasks/{id}": {"get": _op(
            "getTask", "One task; with ?wait=S, a long poll that answers as soon as the task has finished.",
            {"200": task, **_errors(404, 422, 503)}, params=[_ID, _WAIT], scope="read")},
        "/v1/tasks/{id}:cancel": {"post": _op(
            "cancelTask", "Cancel a task: a queued or scheduled one at once; a running one is stopped by its worker.",
            {"200": _json(_ref("Task"), "The cancelled task (it was queued or scheduled)."),
             "202": _json(_ref("Task"), "The task, still running: its worker was asked to stop it, and settles it "
                          "cancelled at its next heartbeat."), **_errors(404, 409, 503)}, params=[_ID],
            scope="submit")},
        "/v1/tasks/{id}/why": {"get": _op(
            "whyWaiting", "What may hold a queued or scheduled task back: its delay, a paused queue, no live worker "
            "serving its queue, at most how many queued tasks go first (an upper bound from the queue's depth), "
            "its type's rate and concurrency limits, the tenant cap. An empty list for a task that is not waiting.",
            {"200": _json(_ref("WhyWaiting"), "Reasons, most telling first."), **_errors(404, 503)}, params=[_ID],
            tag="dashboard", scope="read")},
        "/v1/stats": {"get": _op("stats", "Counts by status and the queued depth.",
                                 {"200": _json(_ref("Stats"), "Counts."), **_errors(503)}, scope="read")},
        "/v1/workers": {"get": _op("listWorkers", "Live workers (a beat within their ttl), by id.",
                                   {"200": _json(_ref("WorkerList"), "Workers."), **_errors(503)}, scope="read")},
        "/v1/leases": {"get": _op(
            "listLeases", "Leases of running tasks, soonest expiry first (expired ones not yet taken back first); "
            "with ?within=S only those that expire within S seconds. Read-only: what claims and heartbeats store.",
            {"200": _json(_ref("LeaseList"), "Leases."), **_errors(422, 503)},
            params=[_param("within", "query", {"type": "number", "minimum": 0, "maximum": 86400},
                           "Only leases that expire within this many seconds."),
                    _param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
                           "At most this many leases (a tenant's key sees its own, among at most 2,000 examined).")],
            tag="dashboard", scope="read")},
        "/v1/experiments": {"get": _op(
            "listExperiments", "Finished `hexq experiment` runs under the server's HEXQ_EXPERIMENTS_DIR, newest first, "
            "each with its headline figures and the paths of its report and figures.",
            {"200": _json(_ref("ExperimentList"), "Runs."), **_errors(503)}, tag="dashboard", scope="read")},
        "/v1/experiments/{name}/{run}/{file}": {"get": _op(
            "experimentFile", "One file of a finished run: report.md (text), summary.json, config.json, tasks.csv or "
            "a PNG figure. Nothing outside HEXQ_EXPERIMENTS_DIR is served.",
            {"200": {"description": "The file.", "content": {media: {"schema": {"type": "string"}} for media in (
                "text/plain", "application/json", "text/csv", "image/png")}}, **_errors(404, 503)},
            params=[_param("name", "path", {"type": "string"}, "The experiment (priority, scaling, ...)."),
                    _param("run", "path", {"type": "string"}, "The run's UTC timestamp directory."),
                    _param("file", "path", {"type": "string"}, "A file name in it.")],
            tag="dashboard", scope="read")},
        "/v1/queues": {"get": _op(
            "listQueues", "Every queue that holds a queued, running, scheduled or dead task, or is paused, by name.",
            {"200": _json(_ref("QueueList"), "Queues."), **_errors(503)}, tag="queues", scope="read")},
        "/v1/queues/{queue}:pause": {"post": _op(
            "pauseQueue", "Pause a queue: workers stop claiming its tasks (those running finish); submits, delays, "
            "retries and cancels go on. Any valid name may be paused, one with no task yet included.",
            {"200": _json(_ref("QueuePaused"), "Paused."), **_errors(422, 503)}, params=[_QUEUE_NAME],
            tag="queues", scope="admin")},
        "/v1/queues/{queue}:resume": {"post": _op(
            "resumeQueue", "Resume a paused queue: its tasks are claimable at once (waiting workers are woken; on "
            "the aws backend, within a second).",
            {"200": _json(_ref("QueuePaused"), "Resumed."), **_errors(422, 503)}, params=[_QUEUE_NAME],
            tag="queues", scope="admin")},
        "/v1/breakers": {"get": _op(
            "listBreakers", "Circuit breakers: every stored one and every one the task types declare, by name.",
            {"200": _json(_ref("BreakerList"), "Breakers."), **_errors(503)}, tag="breakers", scope="read")},
        "/v1/breakers/{name}:open": {"post": _op(
            "openBreaker", "Force a breaker open: workers give its tasks back unrun (attempts unused) until it is "
            "closed; no probe goes by itself. Any valid name may be opened.",
            {"200": _json(_ref("Breaker"), "Open."), **_errors(422, 503)}, params=[_BREAKER_NAME],
            tag="breakers", scope="admin")},
        "/v1/breakers/{name}:close": {"post": _op(
            "closeBreaker", "Close a breaker and forget what it counted: its tasks run again (those held run when "
            "their delay ends).",
            {"200": _json(_ref("Breaker"), "Closed."), **_errors(422, 503)}, params=[_BREAKER_NAME],
            tag="breakers", scope="admin")},
        "/v1/events": {"get": _op(
            "events", "Live figures as server-sent events: a `snapshot` event a second ({at, stats, workers, "
            "histograms}: GET /v1/stats, GET /v1/workers and GET /v1/histograms read together, once a second per "
            "server process whatever the number of viewers), and an `error` event when a read fails (the stream "
            "goes on).",
            {"200": {"description": "text/event-stream. The stream stays open only for a client that asks for one "
                     "(Accept: text/event-stream) and a server that can stream: behind AWS Lambda, and for any other "
                     "client, the answer is one snapshot event and the end.",
                     "content": {"text/event-stream": {"schema": _ref("Event")}}}, **_errors(503)},
            tag="dashboard", scope="read")},
        "/v1/types": {"get": _op("listTypes", "The registered task types, by name.",
                                 {"200": _json(_ref("TypeList"), "Types."), **_errors(503)}, tag="dashboard",
                                 scope="read")},
        "/v1/histograms": {"get": _op(
            "histograms", "Queue-wait seconds by priority and attempt seconds by status, with p50/p95/p99 from the "
            "buckets, and the lease recoveries and fencing rejections counted: what this server process counted, "
            "or under `hexq serve` every one of its processes (as its /metrics shows). {metrics: false} with "
            "HEXQ_METRICS=off.", {"200": _json(_ref("Histograms"), "Figures."), **_errors(503)}, tag="dashboard",
            scope="read")},
        "/v1/whoami": {"get": _whoami()},
        "/v1/dead": {"get": _op("listDead", "Dead-lettered tasks, newest first.",
                                {"200": _json(_ref("TaskPage"), "One page."), **_errors(422, 503)},
                                params=[_TYPE, _QUEUE, _LEVEL_PARAM, _AFTER_PARAM, _BEFORE_PARAM, _SEARCH, _LIMIT,
                                        _CURSOR], tag="dead letters",
                                scope="read")},
        "/v1/dead:replay": {"post": _op(
            "replayDead", "Queue dead tasks again with fresh attempts: those of `ids` (unknown or not-dead ids are "
            "skipped), or every dead task matching `filter` up to `limit` (count first with ?dry_run=1 and send its "
            "`matched` as `confirm`), replayed 500 at a time with a 0.25 s pause between chunks.",
            {"200": {"description": "With ids: the tasks queued again. With a filter: counts.",
                     "content": {"application/json": {"schema": {"oneOf": [_ref("Replayed"), _ref("BulkResult")]}}}},
             **_errors(400, 409, 413, 422, 503)}, params=[_DRY_RUN], body=_ref("Replay"), tag="dead letters",
            scope="admin")},
        "/v1/schedules": {"get": _op("listSchedules", "All schedules, by name.",
                                     {"200": _json(_ref("ScheduleList"), "Schedules."), **_errors(503)},
                                     tag="schedules", scope="read")},
        "/v1/schedules/{name}": {
            "get": _op("getSchedule", "One schedule.",
                       {"200": _json(_ref("Schedule"), "The schedule."), **_errors(404, 503)},
                       params=[_NAME], tag="schedules", scope="read"),
            "put": _op("putSchedule", "Create or replace a schedule.",
                       {"200": _json(_ref("Schedule"), "The stored schedule."),
                        **_errors(400, 409, 413, 422, 503)},
                       params=[_NAME], body=_ref("SchedulePut"), tag="schedules", scope="admin"),
            "delete": _op("deleteSchedule", "Delete a schedule.",
                          {"204": {"description": "Deleted."}, **_errors(404, 503)}, params=[_NAME],
                          tag="schedules", scope="admin"),
        },
    }


def document() -> dict[str, Any]:
    """A fresh copy each call: the app keeps one, and nothing it does can touch this module's tables."""
    return copy.deepcopy({
        "openapi": "3.1.0",
        "info": {"title": "hexq", "version": "1", "description": (
            "A distributed task queue. Every error is JSON {error, message, details}; a wrong method is 405 "
            "method_not_allowed. Tasks are delivered at least once.\n\n"
            "Authentication: when the server has API keys (HEXQ_API_KEYS), every /v1 operation needs one, sent as "
            "`Authorization: Bearer <key>` or `X-API-Key: <key>` (never in the URL); /, /healthz, /readyz and "
            "/openapi.json stay open. A missing, unknown or revoked key is 401 unauthorized; a key without the "
            "operation's scope is 403 forbidden. Scopes: submit (submit, bulk submit, cancel), read (tasks, stats, "
            "workers, queues, breakers, "
            "dead letters, schedules, types, events; /v1/whoami takes any valid key), admin (replay dead letters, put "
            "and delete schedules, pause and resume queues, open and close circuit breakers; implies the others). "
            "A key belongs to a tenant and sees only that tenant's tasks and schedules: another tenant's is 404 "
            "not_found. Exception: /v1/stats and /v1/queues count every tenant's tasks, /v1/workers lists every "
            "worker, and a queue is paused for every tenant (none of them is per tenant). Each key has a "
            "token bucket (HEXQ_RATE, HEXQ_BURST): over it, 429 rate_limited with Retry-After. With no keys "
            "configured the API is open and every caller sees every tenant.")},
        "paths": _paths(),
        "components": {"schemas": _SCHEMAS, "responses": _RESPONSES, "securitySchemes": _SECURITY_SCHEMES},
    })

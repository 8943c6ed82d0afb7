"""Errors as JSON: `{"error": code, "message": text, "details": {...} | null}`, in one exception_handlers map.

Domain errors (hexq.core.errors) become 4xx/503 here and nowhere else; anything unexpected becomes a
JSON 500 `internal_error`, so even a bug answers in the same shape.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ExceptionHandler

from hexq.core.errors import (
    BackendUnavailable,
    ConfirmMismatch,
    IdempotencyMismatch,
    InvalidTransition,
    Overloaded,
    QueueError,
    QueueFull,
    ScheduleNameTaken,
    ScheduleNotFound,
    TaskNotFound,
    UnknownTaskType,
    ValidationError,
)
from hexq.core.services import rejection
from hexq.functions.wire import JSONOut

log = logging.getLogger("hexq.api")


class ApiError(Exception):
    """A client error found by the HTTP layer itself, before any service is called."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, details: Mapping[str, Any] | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.details = details
        self.headers = headers


class BadJSON(ApiError):
    """The body is not one well-formed JSON object (syntax, encoding, NaN, nesting depth)."""

    code = "bad_json"


class BodyTooLarge(ApiError):
    """The body passed the configured cap while it was being read."""

    status = 413
    code = "body_too_large"


class Unauthorized(ApiError):
    """No API key, an unknown one, or a revoked one: one answer for all three, so none can be told apart."""

    status = 401
    code = "unauthorized"

    def __init__(self) -> None:
        super().__init__("a valid API key is required: send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
                         headers={"WWW-Authenticate": 'Bearer realm="hexq"'})


class Forbidden(ApiError):
    """The key is valid but lacks the scope the endpoint needs."""

    status = 403
    code = "forbidden"

    def __init__(self, scope: str) -> None:
        super().__init__(f"this API key lacks the {scope!r} scope", {"scope": scope})


class RateLimited(ApiError):
    """The key's token bucket is empty."""

    status = 429
    code = "rate_limited"

    def __init__(self, wait: float) -> None:
        seconds = retry_after(wait)
        super().__init__(f"too many requests for this API key; retry in {seconds}s", {"retry_after": seconds},
                         headers={"Retry-After": str(seconds)})


def retry_after(seconds: float) -> int:
    """Whole seconds for a Retry-After header: rounded up, and at least 1 (0 would invite a busy retry loop)."""
    return max(1, math.ceil(seconds)) if math.isfinite(seconds) else 1


def error_response(status: int, code: str, message: str, details: Mapping[str, Any] | None = None,
                   headers: Mapping[str, str] | None = None) -> Response:
    return JSONOut({"error": code, "message": message, "details": details}, status_code=status, headers=headers)


# Looked up along the exception's MRO, so UnknownTaskType wins over its base ValidationError.
_DOMAIN: Mapping[type[Exception], tuple[int, str]] = {
    UnknownTaskType: (422, "unknown_task_type"),
    ValidationError: (422, "validation_error"),
    IdempotencyMismatch: (422, "idempotency_mismatch"),
    TaskNotFound: (404, "not_found"),
    ScheduleNotFound: (404, "not_found"),
    InvalidTransition: (409, "invalid_transition"),
    ScheduleNameTaken: (409, "name_taken"),
    ConfirmMismatch: (409, "confirm_mismatch"),
}
_HTTP_CODES: Mapping[int, str] = {404: "not_found", 405: "method_not_allowed"}


async def _domain(request: Request, exc: Exception) -> Response:
    status, code = next(_DOMAIN[cls] for cls in type(exc).__mro__ if cls in _DOMAIN)
    details: dict[str, Any] | None = None
    if isinstance(exc, ValidationError):
        details = {"field": exc.field}
    elif isinstance(exc, InvalidTransition):
        details = {"current": str(exc.current), "target": str(exc.target)}
    elif isinstance(exc, ConfirmMismatch):
        details = {"matched": exc.matched, "confirm": exc.confirm}
    return error_response(status, code, str(exc), details)


async def _api(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, str(exc), exc.details, exc.headers)


async def _unavailable(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BackendUnavailable)
    seconds = exc.retry_after
    retry_after = str(max(0, math.ceil(seconds))) if math.isfinite(seconds) else "1"
    return error_response(503, "backend_unavailable", str(exc), {"retry_after": int(retry_after)},
                          headers={"Retry-After": retry_after})


async def _queue_full(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, QueueFull)
    seconds = retry_after(exc.retry_after)
    return error_response(429, "queue_full", str(exc), {"limit": exc.limit, "retry_after": seconds},
                          headers={"Retry-After": str(seconds)})


async def _overloaded(request: Request, exc: Exception) -> Response:
    """503, not 429: the queue is past a cap every caller shares (core/backpressure.py), so it is the service
    that is over its capacity, not this caller over its own limit."""
    assert isinstance(exc, Overloaded)
    seconds = retry_after(exc.retry_after)
    details = {"queue": exc.queue, "reason": exc.reason, "backlog": exc.backlog, "max_backlog": exc.max_backlog,
               "oldest_age": round(exc.oldest_age, 3), "max_oldest_age": exc.max_oldest_age, "retry_after": seconds}
    headers = {"Retry-After": str(seconds), "X-Hexq-Backlog": str(exc.backlog)}
    if exc.max_backlog:
        headers["X-Hexq-Backlog-Cap"] = str(exc.max_backlog)
    return error_response(503, "overloaded", str(exc), details, headers)


async def _http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = {404: f"no endpoint at {request.url.path}",
               405: f"{request.method} is not allowed on {request.url.path}"}.get(exc.status_code, exc.detail)
    return error_response(exc.status_code, code, message, None, exc.headers)


async def _disconnected(request: Request, exc: Exception) -> Response:
    # Nobody is left to read this; answering keeps a vanished client out of the 500 logs.
    return error_response(400, "client_disconnected", "the client went away before the body was read")


async def _internal(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "internal error; the server log has the details")


_REFUSALS: Mapping[type[ApiError], str] = {Unauthorized: "unauthorized", Forbidden: "forbidden",
                                           RateLimited: "rate_limited", BodyTooLarge: "body_too_large",
                                           BadJSON: "bad_json"}


def refusal(exc: Exception) -> str | None:
    """The hexq_submit_rejections_total reason of a submit refused at the HTTP edge, before the task service
    (which counts its own refusals); None for a client that went away, which refused nothing."""
    if isinstance(exc, ClientDisconnect):
        return None
    if isinstance(exc, QueueError):
        return rejection(exc)
    return next((reason for cls, reason in _REFUSALS.items() if isinstance(exc, cls)), "other")


EXCEPTION_HANDLERS: Mapping[Any, ExceptionHandler] = {
    **{cls: _domain for cls in _DOMAIN},
    ApiError: _api,
    BackendUnavailable: _unavailable,
    QueueFull: _queue_full,
    Overloaded: _overloaded,
    HTTPException: _http,
    ClientDisconnect: _disconnected,
    Exception: _internal,
}

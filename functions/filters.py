"""Wire forms of the listing filters a GET query string and a bulk action's filter share: priority and the
created-time window (TaskQuery.priority, created_after, created_before). Bad values raise ValidationError
naming the field (HTTP 422), never anything a handler would turn into a 500."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from hexq.core.errors import ValidationError
from hexq.core.model import Priority

WINDOW = ("created_after", "created_before")


def priority(value: object, field: str = "priority") -> Priority | None:
    """A level name or 0..3; a query string's "2" counts as 2. None or "" is no filter."""
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) == 1:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int | str):  # `true` means high on submit, not here
        raise ValidationError("priority must be one of low, normal, high, critical or 0-3", field=field)
    try:
        return Priority.parse(value)
    except ValidationError as exc:
        raise ValidationError(str(exc), field=field) from None


def moment(value: object, field: str) -> float | None:
    """Epoch seconds (a number, or its text as a query string has it) or an ISO-8601 time, as the submit's
    run_at takes (no offset means UTC). None or "" is no bound."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return _text_moment(value, field)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(f"{field} must be epoch seconds or an ISO-8601 time", field=field)
    return _finite(value, field)


def _text_moment(text: str, field: str) -> float:
    try:
        return _finite(float(text), field)
    except ValueError:
        pass
    try:
        at = datetime.fromisoformat(text)
        return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()
    except (ValueError, OverflowError):
        raise ValidationError(f"{field} must be epoch seconds or an ISO-8601 time, not {text[:64]!r}",
                              field=field) from None


def _finite(value: float, field: str) -> float:
    try:
        seconds = float(value)
    except OverflowError:  # an integer with hundreds of digits
        raise ValidationError(f"{field} is out of range", field=field) from None
    if not math.isfinite(seconds):
        raise ValidationError(f"{field} must be a finite number of epoch seconds", field=field)
    return seconds

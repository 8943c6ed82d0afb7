"""Wire forms of the listing filters a GET query string and a bulk action's filter share: priority and the
created-time window (TaskQuery.priority, created_after, created_before). Bad values raise ValidationError
naming the field (HTTP 422), never anything a handler would turn into a 500."""

from __future__ import annotations

import argparse
import math
import re
import time
from datetime import UTC, datetime
from typing import Any

from hexq.core.errors import ValidationError
from hexq.core.model import Priority

WINDOW = ("created_after", "created_before")
_AGO = re.compile(r"(\d{1,9}(?:\.\d{1,6})?)([smhd])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


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


def ago(text: str | None, field: str, now: float) -> float | None:
    """The CLI's --since/--until: a duration back from `now` (`90s`, `15m`, `2h`, `7d`), or what moment() takes."""
    if text is not None and (found := _AGO.fullmatch(text)):
        return now - float(found[1]) * _UNIT[found[2]]
    return moment(text, field)


def from_args(args: argparse.Namespace) -> dict[str, Any]:
    """`hexq list` and `hexq dead`'s --priority, --since and --until as TaskQuery's (and core.bulk.Filter's)
    priority, created_after and created_before. A duration (`2h`) counts back from this machine's clock."""
    now = time.time()
    return {"priority": priority(args.priority, "--priority"), "created_after": ago(args.since, "--since", now),
            "created_before": ago(args.until, "--until", now)}


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

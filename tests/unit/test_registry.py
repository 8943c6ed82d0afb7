"""TaskSpec.check: whatever a validator raises about a payload is a ValidationError naming the payload."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from hexq.core.errors import BackendUnavailable, ValidationError
from hexq.core.registry import MAX_REASON, Registry, TaskSpec, Validator


def _spec(validate: Validator) -> TaskSpec:
    registry = Registry()

    @registry.task("resize", validate=validate)
    def resize(payload: dict[str, Any]) -> None: ...

    return registry.get("resize")


def _refusal(validate: Validator, payload: dict[str, Any]) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        _spec(validate).check(payload)
    assert info.value.field == "payload"
    return info.value


def _as_float(payload: dict[str, Any]) -> None:
    float(payload["n"])


def _as_time(payload: dict[str, Any]) -> None:
    datetime.fromtimestamp(payload["n"], UTC)


@pytest.mark.parametrize(("validate", "n", "error"), [
    (_as_float, 10**400, "OverflowError"),  # the fault in issue #9: a 500 before
    (_as_float, -(2**1024), "OverflowError"),
    (_as_time, 10**20, "OverflowError"),
    (_as_time, 1e15, "ValueError"),  # year out of range
    (lambda p: 1 / p["n"], 0, "ZeroDivisionError"),
    (lambda p: p["missing"], 1, "KeyError"),
    (lambda p: [][p["n"]], 0, "IndexError"),
    (lambda p: p["n"].width, 1, "AttributeError"),
])
def test_what_a_validator_does_with_client_numbers_is_a_422(validate: Validator, n: object, error: str) -> None:
    refusal = _refusal(validate, {"n": n})

    assert type(refusal.__cause__).__name__ == error
    assert str(refusal).startswith("resize: ")


def test_a_value_or_type_error_keeps_its_message_as_it_is() -> None:
    def check(payload: dict[str, Any]) -> None:
        raise ValueError("width must be an integer")

    assert str(_refusal(check, {})) == "resize: width must be an integer"


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text")


class _Custom(Exception):
    """A validator's own exception type."""


@pytest.mark.parametrize(("error", "message"), [
    (_Custom("width is 0"), "resize: _Custom: width is 0"),
    (_Unprintable(), "resize: _Unprintable"),
    (ValueError(), "resize: ValueError"),
    (RecursionError(), "resize: RecursionError"),
    (ValidationError("width", field="width"), "resize: ValidationError: width"),
    (BackendUnavailable("redis"), "resize: BackendUnavailable: redis: backend unavailable"),
    (AssertionError("width > 0"), "resize: AssertionError: width > 0"),
])
def test_any_exception_a_validator_raises_is_a_422(error: Exception, message: str) -> None:
    def check(payload: dict[str, Any]) -> None:
        raise error

    refusal = _refusal(check, {})

    assert (str(refusal), refusal.field, refusal.__cause__) == (message, "payload", error)


def test_a_long_message_is_cut() -> None:
    def check(payload: dict[str, Any]) -> None:
        raise ValueError("x" * 100_000)

    assert len(str(_refusal(check, {}))) == len("resize: ") + MAX_REASON


@pytest.mark.parametrize("error", [KeyboardInterrupt(), SystemExit(2), asyncio.CancelledError(), GeneratorExit()])
def test_what_is_not_about_the_payload_goes_on(error: BaseException) -> None:
    def check(payload: dict[str, Any]) -> None:
        raise error

    with pytest.raises(type(error)):
        _spec(check).check({})


def test_a_validator_that_returns_accepts() -> None:
    _spec(lambda payload: False).check({"n": 10**400})

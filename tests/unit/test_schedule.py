from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime

import pytest

from hexq.core.errors import ValidationError
from hexq.core.schedule import MAX_FIRE_TIME, next_fire, parse_every

NOW = 1_700_000_000.0


def _no_cron(spec: str, after: float) -> float:
    raise ValueError("no cron here")


@pytest.mark.parametrize(("spec", "seconds"), [
    ("@every 30s", 30.0), ("@every 1m", 60.0), ("@every 1h30m", 5400.0), ("@every 2d", 172800.0),
    ("@every 1500ms", 1.5),
])
def test_every_specs(spec: str, seconds: float) -> None:
    assert parse_every(spec) == seconds
    assert next_fire(spec, 100.0, _no_cron) == 100.0 + seconds


def test_non_every_spec_goes_to_cron() -> None:
    assert parse_every("*/5 * * * *") is None
    assert next_fire("*/5 * * * *", 0.0, lambda spec, after: after + 300) == 300


@pytest.mark.parametrize("spec", ["@every", "@every 10", "@every 0.5s", "@every soon", "not a cron"])
def test_bad_specs_are_validation_errors(spec: str) -> None:
    with pytest.raises(ValidationError) as info:
        next_fire(spec, 0.0, _no_cron)
    assert info.value.field == "spec"


# -- the supported range: a next fire is a finite time after now and no later than MAX_FIRE_TIME ---------
def test_the_latest_fire_time_is_the_last_second_of_year_9999_utc() -> None:
    assert MAX_FIRE_TIME == datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()


def test_an_every_spec_may_reach_the_latest_fire_time_but_not_pass_it() -> None:
    assert next_fire("@every 10s", MAX_FIRE_TIME - 10, _no_cron) == MAX_FIRE_TIME
    with pytest.raises(ValidationError) as info:
        next_fire("@every 11s", MAX_FIRE_TIME - 10, _no_cron)
    assert info.value.field == "spec"


def test_long_numbers_within_the_range_are_fine() -> None:
    assert next_fire("@every 1." + "0" * 5000 + "1d", NOW, _no_cron) == NOW + 86400
    assert next_fire("@every " + "0" * 400 + "30s", NOW, _no_cron) == NOW + 30
    assert next_fire("@every " + "1s" * 5000, NOW, _no_cron) == NOW + 5000


@pytest.mark.parametrize("spec", [
    "@every 99999999999999999d",  # finite, in the year 2.7e14: it was stored, then broke every read
    "@every 2900000d 2900000d",  # not the grammar (a space between parts)
    "@every 5900000d",  # just past year 9999 from 2023
    "@every " + "9" * 400 + "s",  # float() of it is inf
    "@every 1" + "0" * 400 + "ms",
    "@every " + "9999999d" * 2000,  # many parts summing past the range
    "@every 1e308s",  # not a number this grammar knows
    "@every 0.0000000001ms",  # tiny
    "@every " + "0.001ms" * 999,  # many tiny parts summing to under a second
    "@every 0s",
])
def test_every_specs_out_of_range_are_refused(spec: str) -> None:
    with pytest.raises(ValidationError) as info:
        next_fire(spec, NOW, _no_cron)
    assert info.value.field == "spec"
    assert len(str(info.value)) < 300  # the message quotes only the start of a huge spec


@pytest.mark.parametrize("fire", [math.inf, -math.inf, math.nan, 1e300, 10**400, MAX_FIRE_TIME + 1, NOW, NOW - 60,
                                  "soon", None, True, [NOW + 60]])
def test_a_cron_result_that_is_not_a_time_in_range_is_refused(fire: object) -> None:
    with pytest.raises(ValidationError) as info:
        next_fire("0 0 * * *", NOW, lambda spec, after: fire)  # type: ignore[arg-type, return-value]
    assert info.value.field == "spec"


def test_a_cron_result_in_range_is_a_float() -> None:
    assert next_fire("0 0 * * *", NOW, lambda spec, after: int(after) + 60) == NOW + 60
    assert next_fire("0 0 * * *", NOW, lambda spec, after: MAX_FIRE_TIME) == MAX_FIRE_TIME


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text")


@pytest.mark.parametrize("error", [
    ValueError("bad"), KeyError("field"), OverflowError("date value out of range"), ZeroDivisionError("step 0"),
    IndexError("list index out of range"), AttributeError("'NoneType' object has no attribute 'x'"),
    RecursionError(), RuntimeError("x" * 10_000), _Unprintable(), TypeError("unsupported operand"),
])
def test_whatever_the_cron_parser_raises_is_a_bad_spec(error: Exception) -> None:
    def cron(spec: str, after: float) -> float:
        raise error

    with pytest.raises(ValidationError) as info:
        next_fire("* * * * *", NOW, cron)
    assert info.value.field == "spec"
    assert info.value.__cause__ is error
    assert len(str(info.value)) < 400


@pytest.mark.parametrize("error", [KeyboardInterrupt(), SystemExit(1), asyncio.CancelledError()])
def test_what_is_not_about_the_spec_goes_on(error: BaseException) -> None:
    def cron(spec: str, after: float) -> float:
        raise error

    with pytest.raises(type(error)):
        next_fire("* * * * *", NOW, cron)


@pytest.mark.parametrize("spec", [5, None, b"@every 1m", ["@every 1m"]])
def test_a_spec_that_is_not_text_is_refused(spec: object) -> None:
    with pytest.raises(ValidationError) as info:
        next_fire(spec, NOW, _no_cron)  # type: ignore[arg-type]
    assert info.value.field == "spec"

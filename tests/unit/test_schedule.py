from __future__ import annotations

import pytest

from core.errors import ValidationError
from core.schedule import next_fire, parse_every


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

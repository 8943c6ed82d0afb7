"""hexq.core.fairness: the turn rule every backend follows, and HEXQ_TENANT_WEIGHTS."""

from __future__ import annotations

import pytest

from hexq.core.errors import ConfigurationError
from hexq.core.fairness import next_turn, parse_weights, step_of
from hexq.functions.settings import Settings


def test_a_level_without_a_clock_starts_at_the_tasks_seq() -> None:
    assert next_turn(None, None, 1.0, 41) == 41.0


def test_a_tenant_new_to_a_level_starts_at_its_clock() -> None:
    assert next_turn(100.0, None, 1.0, 7) == 100.0


def test_a_backlogged_tenant_goes_on_from_its_last_turn() -> None:
    assert next_turn(100.0, 250.0, 1.0, 7) == 251.0
    assert next_turn(100.0, 250.0, 0.25, 7) == 250.25


def test_an_idle_tenant_banks_no_credit() -> None:
    """A tenant whose last turn is long past starts at the clock, not right after its old turn."""
    assert next_turn(100.0, 3.0, 1.0, 7) == 100.0


def test_weights_parse_and_give_steps() -> None:
    weights = parse_weights(" acme = 3, globex=1,,")
    assert weights == {"acme": 3, "globex": 1}
    assert (step_of(weights, "acme"), step_of(weights, "globex"), step_of(weights, "other")) == (1 / 3, 1.0, 1.0)
    assert parse_weights("") == {}


@pytest.mark.parametrize("text", ["acme", "acme=0", "acme=101", "acme=1.5", "acme=-2", "=3", "a=b=3"])
def test_a_bad_weight_is_a_configuration_error_naming_it(text: str) -> None:
    with pytest.raises(ConfigurationError, match="HEXQ_TENANT_WEIGHTS"):
        parse_weights(text)
    with pytest.raises(ConfigurationError, match="HEXQ_TENANT_WEIGHTS"):
        Settings.from_env({"HEXQ_TENANT_WEIGHTS": text})


def test_settings_read_the_weights() -> None:
    assert Settings.from_env({"HEXQ_TENANT_WEIGHTS": "acme=3"}).weights == {"acme": 3}
    assert Settings().weights == {}

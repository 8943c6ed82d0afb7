from __future__ import annotations

import pytest

from hexq.core.errors import ConfigurationError, ValidationError
from hexq.functions.settings import Settings


def test_every_setting_has_an_env_var() -> None:
    settings = Settings.from_env({"HEXQ_BACKEND": "memory://", "HEXQ_PORT": "9000", "HEXQ_LEASE": "2.5",
                                  "HEXQ_QUEUES": "a, b", "HEXQ_TASKS": "x.y"})
    assert (settings.backend_url, settings.port, settings.lease_seconds) == ("memory://", 9000, 2.5)
    assert (settings.queues, settings.task_modules) == (("a", "b"), ("x.y",))


@pytest.mark.parametrize(("env", "message"), [
    ({"HEXQ_PORT": "eighty"}, "HEXQ_PORT has value 'eighty'"),
    ({"HEXQ_PORT": "70000"}, "HEXQ_PORT must be 0 to 65535"),
    ({"HEXQ_LEASE": "0"}, "HEXQ_LEASE must be above 0"),
    ({"HEXQ_WORKERS": "0"}, "HEXQ_WORKERS must be at least 1"),
    ({"HEXQ_QUEUES": " , "}, "HEXQ_QUEUES names no queue"),
])
def test_bad_values_fail_loudly_naming_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Settings.from_env(env)


def test_queue_names_are_checked() -> None:
    with pytest.raises(ValidationError):
        Settings(queues=("no spaces please",))


def test_flags_override_only_what_was_given() -> None:
    settings = Settings(port=9000).override(port=None, workers=4)
    assert (settings.port, settings.workers) == (9000, 4)

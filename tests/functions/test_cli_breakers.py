"""`hexq breakers [open|close NAME]`."""

from __future__ import annotations

import json

import pytest

from tests.functions.test_cli import backend, restore_sys_path, run

__all__ = ["backend", "restore_sys_path"]


def test_open_list_and_close(backend: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "breakers") == (0, "no circuit breakers (declare one with @task(..., breaker=Breaker(...)))\n",
                                       "")
    assert run(capsys, "breakers", "open", "payments") == (0, "opened breaker payments (its tasks wait until it is "
                                                              "closed)\n", "")
    code, out, _ = run(capsys, "breakers")
    assert code == 0 and out.splitlines()[1].split()[:3] == ["payments", "open", "(forced)"]
    code, out, _ = run(capsys, "breakers", "--json")
    [listed] = json.loads(out)["breakers"]
    assert (listed["name"], listed["state"], listed["forced"]) == ("payments", "open", True)
    assert run(capsys, "breakers", "close", "payments") == (0, "closed breaker payments\n", "")
    assert json.loads(run(capsys, "breakers", "--json")[1])["breakers"][0]["state"] == "closed"


def test_a_bad_name_is_a_usage_error(backend: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "breakers", "open", "no spaces")
    assert code == 2 and "breaker must match" in err

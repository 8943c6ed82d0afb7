"""`hexq list` and `hexq dead` with --priority, --since and --until, and `hexq dead --replay-matching` with them."""

from __future__ import annotations

import asyncio
import json
import math
import time
from datetime import UTC, datetime

import pytest

from tests.functions.test_cli import backend, drain, run, submit

__all__ = ["backend"]  # a fixture, used by name


def ids(capsys: pytest.CaptureFixture[str], *argv: str) -> list[str]:
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    return [t["id"] for t in json.loads(out)["tasks"]]


def test_list_by_priority_and_created_time(backend: str, capsys: pytest.CaptureFixture[str]) -> None:
    low = submit(capsys, "echo", "--priority", "low")
    time.sleep(1.1)  # created_at comes from the real clock here: a whole second falls between the two tasks
    high = submit(capsys, "echo", "--priority", "high")
    start = high["created_at"]
    iso = datetime.fromtimestamp(math.floor(start), UTC).isoformat()  # a second boundary after `low`

    assert ids(capsys, "list", "--priority", "high") == [high["id"]]
    assert ids(capsys, "list", "--since", repr(start)) == ids(capsys, "list", "--since", iso) == [high["id"]]
    assert ids(capsys, "list", "--until", iso) == [low["id"]]
    assert ids(capsys, "list", "--since", "1h") == [high["id"], low["id"]]
    assert ids(capsys, "list", "--until", "1h") == []
    assert ids(capsys, "list", "--since", iso, "--until", iso) == []


def test_a_bad_time_is_a_usage_error(backend: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "list", "--since", "last tuesday")
    assert code == 2 and err.startswith("hexq: error: --since must be epoch seconds or an ISO-8601 time")
    code, _, err = run(capsys, "dead", "--until", "nan")
    assert code == 2 and "--until must be a finite number" in err
    code, _, err = run(capsys, "list", "--priority", "urgent")
    assert code == 2 and "invalid choice: 'urgent'" in err


def test_dead_lists_and_replays_by_priority(backend: str, capsys: pytest.CaptureFixture[str]) -> None:
    low = submit(capsys, "fail", '{"probability": 1}', "--max-attempts", "1", "--priority", "low")
    critical = submit(capsys, "fail", '{"probability": 1}', "--max-attempts", "1", "--priority", "critical")
    asyncio.run(drain(backend))

    assert ids(capsys, "dead", "--priority", "critical") == [critical["id"]]
    code, out, _ = run(capsys, "dead", "--replay-matching", "--yes", "--priority", "low", "--since", "1d")
    assert code == 0 and "replayed 1 of 1" in out
    assert json.loads(run(capsys, "status", low["id"])[1])["status"] == "queued"
    assert json.loads(run(capsys, "status", critical["id"])[1])["status"] == "dead"

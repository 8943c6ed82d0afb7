"""Task events in the logs (functions/task_events.py): one JSON line per event, with its fields at the top level,
through the real formatter; the HEXQ_TASK_EVENTS switch; fan_out's isolation of a failing observer."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from hexq.adapters.memory import MemoryBackend
from hexq.core import outcome
from hexq.core.clock import FakeClock
from hexq.core.events import NO_EVENTS, Events
from hexq.core.model import Priority, Task, TaskStatus, replaced
from hexq.core.poller import Poller, PollerConfig
from hexq.core.registry import Registry
from hexq.core.retry import RetryPolicy
from hexq.core.schedules import ScheduleService
from hexq.core.services import SubmitRequest, TaskService
from hexq.functions.cli import build_parser
from hexq.functions.logs import JSONFormatter
from hexq.functions.settings import Settings
from hexq.functions.task_events import FanOut, LogEvents, fan_out, log_events

T0 = 1_700_000_000.0


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    """What hexq.events writes, formatted by the JSON formatter every entry point installs."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JSONFormatter())
    logger = logging.getLogger("hexq.events")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(level)


def parsed(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def running(**changes: Any) -> Task:
    fields: dict[str, Any] = {"id": "t1", "type": "email", "payload": {"secret": "x"}, "queue": "mail",
                              "priority": Priority.HIGH, "status": TaskStatus.RUNNING, "attempts": 1,
                              "created_at": T0, "run_at": T0 + 1, "started_at": T0 + 3, "worker_id": "w1"}
    return Task(**(fields | changes))


def test_a_finished_attempt_is_one_json_line_with_its_fields_at_the_top_level(lines: io.StringIO) -> None:
    task = running()
    LogEvents().finished(task, outcome.succeeded(task, {"ok": True}), 0.25)
    [line] = parsed(lines)
    assert line["logger"] == "hexq.events" and line["level"] == "info"
    assert line["message"] == "task succeeded"
    assert {k: line[k] for k in ("event", "task_id", "type", "queue", "priority", "attempt", "worker_id",
                                 "status", "duration")} == {
        "event": "succeeded", "task_id": "t1", "type": "email", "queue": "mail", "priority": "high", "attempt": 1,
        "worker_id": "w1", "status": "succeeded", "duration": 0.25}
    assert "payload" not in line and "secret" not in json.dumps(line) and "error" not in line


def test_a_retry_says_how_long_it_waits_and_why(lines: io.StringIO) -> None:
    task = running()
    after = outcome.failed(task, "ValueError: bad input\nmore detail", RetryPolicy(base=2.0, jitter=0.0))
    LogEvents().finished(task, after, 1.5)
    [line] = parsed(lines)
    assert (line["event"], line["status"], line["retry_in"]) == ("retried", "scheduled", 2.0)
    assert line["error"] == "ValueError: bad input"


def test_a_retry_the_backend_stamped_waits_until_its_run_at(lines: io.StringIO) -> None:
    task = running()
    after = outcome.failed(task, "boom", RetryPolicy(base=2.0, jitter=0.0))
    stamped = replaced(after, delay=0.0, run_at=T0 + 3 + 1.5 + 4.0)  # due 4s after the attempt ended
    LogEvents().finished(task, stamped, 1.5)
    assert parsed(lines)[0]["retry_in"] == 4.0


@pytest.mark.parametrize(("after", "event", "status"), [
    (lambda t: outcome.failed(t, "x" * 500, RetryPolicy(), retryable=False), "dead", "dead"),
    (lambda t: outcome.cancelled(t), "cancelled", "cancelled"),
    (lambda t: outcome.released(t), "released", "queued"),
])
def test_each_end_of_an_attempt_has_its_event(lines: io.StringIO, after: Any, event: str, status: str) -> None:
    task = running()
    LogEvents().finished(task, after(task), 2.0)
    [line] = parsed(lines)
    assert (line["event"], line["status"], line["duration"]) == (event, status, 2.0)
    assert len(line.get("error", "")) <= 200


def test_every_event_gives_one_line(lines: io.StringIO) -> None:
    events = LogEvents()
    task = running()
    events.submitted([running(id="a", status=TaskStatus.QUEUED), running(id="b", status=TaskStatus.QUEUED)])
    events.rejected("queue_full")
    events.started(task)
    events.fenced("settle", task)
    events.recovered(task)
    events.cancelled(running(status=TaskStatus.QUEUED))
    events.replayed([task])
    events.schedule_fired("nightly", 0.5)
    events.rate_waited("email", 0.125)
    got = parsed(lines)
    assert [line["event"] for line in got] == ["submitted", "submitted", "rejected", "started", "fenced", "recovered",
                                               "cancelled", "replayed", "schedule_fired", "rate_waited"]
    by_event = {line["event"]: line for line in got}
    assert [line["task_id"] for line in got[:2]] == ["a", "b"]
    assert by_event["rejected"]["reason"] == "queue_full"
    assert by_event["started"]["wait"] == 2.0  # started at T0+3, due at T0+1: a deliberate delay is not waiting
    assert by_event["fenced"]["op"] == "settle"
    assert (by_event["schedule_fired"]["schedule"], by_event["schedule_fired"]["lag"]) == ("nightly", 0.5)
    assert (by_event["rate_waited"]["type"], by_event["rate_waited"]["wait"]) == ("email", 0.125)


def test_nothing_is_built_when_the_logger_would_drop_the_line(monkeypatch: pytest.MonkeyPatch) -> None:
    logger = logging.getLogger("hexq.events.quiet")
    logger.setLevel(logging.WARNING)
    monkeypatch.setattr("hexq.functions.task_events.task_fields", _fail)
    events = LogEvents(logger)
    task = running()
    events.submitted([task])
    events.finished(task, outcome.succeeded(task, None), 1.0)
    events.started(task)


def _fail(task: Task) -> dict[str, Any]:
    raise AssertionError("fields built for a line nobody logs")


def test_the_switch_turns_the_lines_off(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(log_events(Settings()), LogEvents)
    for off in ("off", "false", "OFF"):
        monkeypatch.setenv("HEXQ_TASK_EVENTS", off)
        assert log_events(Settings.from_env()) is NO_EVENTS
    monkeypatch.setenv("HEXQ_TASK_EVENTS", "on")
    assert Settings.from_env().task_events


def test_the_cli_flag_turns_them_off() -> None:
    args = build_parser().parse_args(["worker", "--no-task-events"])
    assert vars(args)["setting:task_events"] is False
    assert vars(build_parser().parse_args(["worker"]))["setting:task_events"] is None


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Any:
        return lambda *args: self.calls.append((name, args))


class Broken:
    def __getattr__(self, name: str) -> Any:
        def fail(*args: Any) -> None:
            raise RuntimeError("observer bug")
        return fail


def test_fan_out_skips_no_events_and_returns_a_lone_observer_as_is() -> None:
    only = LogEvents()
    assert fan_out() is NO_EVENTS
    assert fan_out(NO_EVENTS, NO_EVENTS) is NO_EVENTS
    assert fan_out(NO_EVENTS, only) is only
    assert isinstance(fan_out(only, LogEvents()), FanOut)


def test_fan_out_isolates_a_failing_observer_and_logs_it_once(caplog: pytest.LogCaptureFixture) -> None:
    first, last = Recorder(), Recorder()
    observers: Sequence[Any] = (first, Broken(), last)
    events: Events = fan_out(*observers)
    task = running()
    with caplog.at_level(logging.ERROR, logger="hexq.functions.task_events"):
        events.started(task)
        events.finished(task, outcome.succeeded(task, None), 1.0)
        events.rejected("validation")
    assert [name for name, _ in first.calls] == [name for name, _ in last.calls] == ["started", "finished", "rejected"]
    [record] = [r for r in caplog.records if r.name == "hexq.functions.task_events"]
    assert "Broken" in record.getMessage() and record.exc_info is not None


async def test_the_poller_logs_its_tick_as_fields(registry: Registry, clock: FakeClock) -> None:
    backend = MemoryBackend(clock)
    tasks = TaskService(backend, backend, registry, clock)
    poller = Poller(backend, backend, ScheduleService(backend, tasks, registry, lambda spec, after: after + 60),
                    PollerConfig())
    await tasks.submit(SubmitRequest("echo", {}, delay=5))
    clock.advance(5)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JSONFormatter())
    logger = logging.getLogger("hexq.poller")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        await poller._logged_tick()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
    [line] = parsed(stream)
    assert line["message"] == "tick"
    assert {k: line[k] for k in ("promoted", "recovered", "fired", "purged", "backlog", "invoked")} == {
        "promoted": 1, "recovered": 0, "fired": 0, "purged": 0, "backlog": 1, "invoked": 0}


@pytest.mark.parametrize("created", [0.0, 1.9995, 1_764_000_000.123456, 1_764_000_000.999, 253_402_300_799.5])
def test_the_log_timestamp_is_what_datetime_isoformat_writes(created: float) -> None:
    from datetime import UTC, datetime

    from hexq.functions.logs import JSONFormatter

    formatter = JSONFormatter()
    expected = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
    assert formatter._timestamp(created) == expected
    assert formatter._timestamp(created) == expected  # the second, from the cached seconds

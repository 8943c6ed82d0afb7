"""Metrics on Lambda (functions/emf.py): task events as CloudWatch EMF lines, aggregated per invocation and
printed when each Lambda handler returns."""

from __future__ import annotations

import json
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest

from hexq.core import outcome
from hexq.core.model import Priority, Task, TaskStatus
from hexq.core.retry import RetryPolicy
from hexq.functions.emf import MAX_METRICS, MAX_VALUES, EmfEvents, bucket, documents, flush
from hexq.functions.task_events import fan_out
from tests.functions.test_lambda import FakeContext, event, lambda_env, load_lambda  # noqa: F401  (fixtures)

T0 = 1_700_000_000.0
NOW_MS = 1_700_000_100_000


def running(**changes: Any) -> Task:
    fields: dict[str, Any] = {"id": "t1", "type": "email", "payload": {}, "queue": "mail", "priority": Priority.HIGH,
                              "status": TaskStatus.RUNNING, "attempts": 1, "created_at": T0, "run_at": T0,
                              "started_at": T0 + 2, "worker_id": "w1"}
    return Task(**(fields | changes))


def recorder() -> tuple[EmfEvents, list[dict[str, Any]]]:
    lines: list[str] = []
    parsed: list[dict[str, Any]] = []

    def write(line: str) -> None:
        assert "\n" not in line  # one log event per line
        lines.append(line)
        parsed.append(json.loads(line))

    return EmfEvents(write=write, clock=lambda: NOW_MS / 1000), parsed


def valid(doc: dict[str, Any], timestamp: int | None = NOW_MS) -> dict[str, Any]:
    """Check one document against the EMF specification's structure; return {metric: value}."""
    aws = doc["_aws"]
    assert set(aws) == {"Timestamp", "CloudWatchMetrics"}
    assert isinstance(aws["Timestamp"], int) and aws["Timestamp"] == (timestamp or aws["Timestamp"])
    metrics = []
    for directive in aws["CloudWatchMetrics"]:
        assert set(directive) == {"Namespace", "Dimensions", "Metrics"}
        assert directive["Namespace"] == "hexq"
        for dimension_set in directive["Dimensions"]:
            assert len(dimension_set) <= 30
            for name in dimension_set:
                assert isinstance(doc[name], str)  # each dimension is a top-level string member
        metrics += directive["Metrics"]
    assert 0 < len(metrics) <= MAX_METRICS
    values: dict[str, Any] = {}
    for metric in metrics:
        assert set(metric) == {"Name", "Unit"} and metric["Unit"] in ("Count", "Seconds")
        value = doc[metric["Name"]]  # each metric's value is a top-level member
        if isinstance(value, dict):
            assert len(value["Values"]) == len(value["Counts"]) <= MAX_VALUES
            assert value["Count"] == sum(value["Counts"]) and value["Min"] <= value["Max"]
        else:
            assert isinstance(value, int | float)
        values[metric["Name"]] = value
    assert len(values) == len(metrics)  # a name once per document
    return values


def test_counts_and_durations_aggregate_within_an_invocation() -> None:
    events, lines = recorder()
    for seconds in (0.1, 0.1, 0.2):
        task = running()
        events.finished(task, outcome.succeeded(task, None), seconds)
    events.flush()
    # One line, however many tasks: processed by type, queue, priority and status, and on the same line the
    # duration (as in Prometheus) by type, queue and status, the attempts by type and status.
    [doc] = lines
    values = valid(doc)
    assert (doc["type"], doc["queue"], doc["priority"], doc["status"]) == ("email", "mail", "high", "succeeded")
    dimensions = {m["Name"]: d["Dimensions"] for d in doc["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    assert dimensions["hexq_tasks_processed_total"] == [["priority", "queue", "status", "type"]]
    assert dimensions["hexq_task_duration_seconds"] == [["queue", "status", "type"]]
    assert dimensions["hexq_task_attempts"] == [["status", "type"]]
    assert values["hexq_tasks_processed_total"] == 3
    assert values["hexq_task_duration_seconds"]["Counts"] == [2, 1]
    assert values["hexq_task_duration_seconds"]["Values"] == [0.1, bucket(0.2)]


def test_each_set_of_dimension_values_is_its_own_line() -> None:
    events, lines = recorder()
    task = running()
    events.finished(task, outcome.succeeded(task, None), 0.5)
    events.finished(task, outcome.failed(task, "timeout: exceeded 5s", RetryPolicy()), 5.0)
    events.rejected("queue_full")
    events.submitted([running(type="report", status=TaskStatus.QUEUED)])
    events.flush()
    docs = {json.dumps({k: v for k, v in doc.items() if isinstance(v, str)}, sort_keys=True): valid(doc)
            for doc in lines}
    by = {tuple(sorted(json.loads(k).items())): v for k, v in docs.items()}
    assert by[(("reason", "queue_full"),)] == {"hexq_submit_rejections_total": 1}
    retried = by[(("priority", "high"), ("queue", "mail"), ("status", "timed_out"), ("type", "email"))]
    assert retried["hexq_tasks_processed_total"] == 1
    assert retried["hexq_task_duration_seconds"]["Values"] == [bucket(5.0)]
    assert by[(("queue", "mail"), ("reason", "timeout"), ("type", "email"))] == {"hexq_task_retries_total": 1}
    assert by[(("priority", "high"), ("queue", "mail"), ("type", "report"))] == {"hexq_tasks_submitted_total": 1}


def test_a_final_attempt_records_end_to_end_time_and_attempts() -> None:
    events, lines = recorder()
    task = running(attempts=3, max_attempts=3)
    events.finished(task, outcome.failed(task, "boom", RetryPolicy()), 1.0)  # dead after its third attempt
    events.flush()
    values: dict[str, Any] = {}
    for doc in lines:
        values |= valid(doc)
    assert values["hexq_tasks_dead_lettered_total"] == 1
    assert values["hexq_task_end_to_end_seconds"]["Values"] == [bucket(3.0)]  # created T0, ended T0+2+1
    assert values["hexq_task_attempts"]["Values"] == [3]


def test_flush_empties_what_was_counted() -> None:
    events, lines = recorder()
    events.rejected("validation")
    events.flush()
    events.flush()
    assert len(lines) == 1
    events.rejected("validation")
    events.flush()
    assert len(lines) == 2 and valid(lines[1]) == {"hexq_submit_rejections_total": 1}


def test_more_than_100_metrics_or_values_go_on_further_lines() -> None:
    counts = {(("type", "t"),): {f"m{i}": 1.0 for i in range(MAX_METRICS + 20)}}
    histogram = {float(i): 1 for i in range(1, MAX_VALUES + 31)}
    docs = list(documents("hexq", counts, {(("type", "t"),): {"hexq_task_duration_seconds": histogram}}, NOW_MS))
    names = [name for doc in docs for name in valid(doc)]
    assert len(docs) == 3  # 100 counters; 20 and the first 100 values; the last 30 (a name once a line)
    assert sorted(n for n in names if n.startswith("m")) == sorted(f"m{i}" for i in range(MAX_METRICS + 20))
    parts = [doc["hexq_task_duration_seconds"] for doc in docs if "hexq_task_duration_seconds" in doc]
    assert sum(part["Count"] for part in parts) == MAX_VALUES + 30


@pytest.mark.parametrize(("value", "expected"), [(0.0, 0.0), (-1.0, 0.0), (1.0, 1.0), (10.0, 10.0), (0.5, 0.5012)])
def test_bucket_rounds_to_twenty_steps_a_decade(value: float, expected: float) -> None:
    assert bucket(value) == expected


def test_bucket_is_within_six_percent() -> None:
    for i in range(1, 2000):
        value = i * 0.0137
        assert abs(bucket(value) - value) / value < 0.06


def test_every_event_is_counted_under_its_prometheus_name() -> None:
    events, lines = recorder()
    task = running()
    events.started(task)
    events.fenced("settle", task)
    events.recovered(task)
    events.cancelled(task)
    events.replayed([task])
    events.schedule_fired("nightly", 1.5)
    events.rate_waited("email", 0.25)
    events.finished(task, outcome.cancelled(task), 0.1)
    events.flush()
    names = {name for doc in lines for name in valid(doc)}
    assert names == {"hexq_task_queue_wait_seconds", "hexq_fencing_rejections_total", "hexq_lease_recoveries_total",
                     "hexq_tasks_cancelled_total", "hexq_dead_letter_replays_total", "hexq_schedule_fires_total",
                     "hexq_schedule_lag_seconds", "hexq_type_rate_limit_waits_total",
                     "hexq_type_rate_limit_wait_seconds", "hexq_tasks_processed_total", "hexq_task_duration_seconds",
                     "hexq_task_end_to_end_seconds", "hexq_task_attempts"}


def test_flush_reaches_an_emf_observer_inside_a_fan_out_and_never_raises() -> None:
    events, lines = recorder()
    events.rejected("validation")
    flush(fan_out(events, EmfEvents(write=_broken)))
    assert len(lines) == 1
    broken = EmfEvents(write=_broken)
    broken.rejected("validation")
    broken.flush()  # logged, not raised: metrics must not fail an invocation


def _broken(line: str) -> None:
    raise OSError("stdout closed")


# -- each Lambda handler prints its invocation's metrics as it returns ---------------------------------------
def _emf_lines(out: str) -> list[dict[str, Any]]:
    return [doc for doc in map(json.loads, out.splitlines()) if "_aws" in doc]


@pytest.mark.parametrize(("module", "event_name"), [("lambda_worker", "worker-direct"),
                                                    ("lambda_poller", "schedule-tick"),
                                                    ("lambda_api", "api-v2-status")])
def test_each_lambda_handler_flushes_its_metrics_as_it_returns(
        load_lambda: Callable[[str], ModuleType], capsys: pytest.CaptureFixture[str],  # noqa: F811
        module: str, event_name: str) -> None:
    handler = load_lambda(module).handler
    events = handler.events if module == "lambda_api" else handler.container.events
    events.rejected("validation")  # something counted during this invocation
    capsys.readouterr()
    handler(event(event_name, "0" * 32), FakeContext())
    [doc] = _emf_lines(capsys.readouterr().out)
    assert valid(doc, None) == {"hexq_submit_rejections_total": 1} and doc["reason"] == "validation"
    handler(event(event_name, "0" * 32), FakeContext())
    assert _emf_lines(capsys.readouterr().out) == []  # the next invocation starts from nothing

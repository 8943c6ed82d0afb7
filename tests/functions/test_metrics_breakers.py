"""Breaker and deferral metrics: hexq_circuit_state from the backend at the scrape, hexq_task_deferrals_total and
hexq_circuit_transitions_total from the workers' events."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import CollectorRegistry
from starlette.testclient import TestClient

from hexq.core.model import Priority, Task, TaskStatus, replaced
from hexq.functions.metrics.events import Labels, PrometheusEvents
from hexq.functions.metrics.instruments import TaskInstruments
from hexq.functions.task_events import LogEvents


def test_the_circuit_state_gauge_reads_the_stored_breakers(client: TestClient) -> None:
    client.post("/v1/breakers/payments:open")
    client.post("/v1/breakers/mail:open")
    client.post("/v1/breakers/mail:close")

    body = client.get("/metrics").text

    assert 'hexq_circuit_state{breaker="payments"} 2.0' in body
    assert 'hexq_circuit_state{breaker="mail"} 0.0' in body


def test_deferrals_are_counted_by_type_and_reason_and_transitions_by_state() -> None:
    registry = CollectorRegistry()
    events = PrometheusEvents(TaskInstruments.create(registry), Labels(["echo"], ["default"]))
    task = Task("t1", "echo", {}, priority=Priority.NORMAL, status=TaskStatus.RUNNING, attempts=1)
    after = replaced(task, status=TaskStatus.SCHEDULED, attempts=0, delay=2.0)

    events.deferred(task, after, "retry")
    events.deferred(task, after, "breaker")
    events.deferred(replaced(task, type="unknown"), after, "breaker")
    events.circuit_changed("payments", "closed", "open")

    def value(name: str, **labels: str) -> float:
        return registry.get_sample_value(name, labels) or 0.0

    assert value("hexq_task_deferrals_total", type="echo", reason="retry") == 1.0
    assert value("hexq_task_deferrals_total", type="echo", reason="breaker") == 1.0
    assert value("hexq_task_deferrals_total", type="other", reason="breaker") == 1.0
    assert value("hexq_circuit_transitions_total", breaker="payments", state="open") == 1.0


def test_deferrals_and_circuit_changes_are_logged_as_events(caplog: pytest.LogCaptureFixture) -> None:
    task = Task("t1", "echo", {}, status=TaskStatus.RUNNING, attempts=1)
    with caplog.at_level(logging.INFO, logger="hexq.events"):
        LogEvents().deferred(task, replaced(task, status=TaskStatus.SCHEDULED, delay=2.5), "retry")
        LogEvents().circuit_changed("payments", "closed", "open")
    deferred, changed = caplog.records
    assert (deferred.event, deferred.reason, deferred.retry_in, deferred.task_id) == (  # type: ignore[attr-defined]
        "deferred", "retry", 2.5, "t1")
    assert (changed.event, changed.breaker, changed.getMessage()) == (  # type: ignore[attr-defined]
        "circuit_changed", "payments", "breaker payments open")

"""Prometheus metrics (functions/metrics/): counters and histograms move as events arrive, labels stay
bounded, state gauges come from the backend at the scrape, /metrics is guarded by the metrics scope, HTTP
requests are counted by route template, and a real scrape passes `promtool check metrics`."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from starlette.testclient import TestClient

from hexq.core.auth import Scope, entry
from hexq.core.clock import FakeClock
from hexq.core.model import Priority, Stats, Task, TaskStatus, replaced
from hexq.core.ports import FinishWaiter, SettleAndClaim
from hexq.core.registry import Registry
from hexq.core.worker import _settle_and_claim
from hexq.functions.bootstrap import Container
from hexq.functions.metrics.events import Labels, PrometheusEvents
from hexq.functions.metrics.http import template
from hexq.functions.metrics.instruments import TaskInstruments
from hexq.functions.metrics.state import State, StateCollector
from hexq.functions.metrics.timing import TimedBackend, TimedSettleAndClaim

SECRET = "hexq_metrics_test_secret_0123456789abcdef"
ClientFactory = Callable[..., TestClient]


def observer() -> tuple[PrometheusEvents, CollectorRegistry]:
    registry = CollectorRegistry()
    return PrometheusEvents(TaskInstruments.create(registry), Labels(["echo"], ["default", "mail"])), registry


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def running(**changes: Any) -> Task:
    fields: dict[str, Any] = dict(id="t1", type="echo", payload={}, queue="default", priority=Priority.HIGH,
                                  status=TaskStatus.RUNNING, attempts=1, created_at=100.0, run_at=100.0,
                                  started_at=100.5)
    return Task(**{**fields, **changes})


# -- the observer -------------------------------------------------------------------------------------
def test_a_succeeded_task_moves_every_instrument_it_should() -> None:
    events, r = observer()
    task = running()
    events.submitted([task])
    events.started(task)
    events.finished(task, task.moved_to(TaskStatus.SUCCEEDED), 0.25)

    labels = dict(type="echo", queue="default")
    assert value(r, "hexq_tasks_submitted_total", **labels, priority="high") == 1
    assert value(r, "hexq_tasks_processed_total", **labels, priority="high", status="succeeded") == 1
    assert value(r, "hexq_task_queue_wait_seconds_sum", **labels, priority="high") == pytest.approx(0.5)
    assert value(r, "hexq_task_duration_seconds_bucket", **labels, status="succeeded", le="0.25") == 1
    assert value(r, "hexq_task_duration_seconds_bucket", **labels, status="succeeded", le="0.1") == 0
    assert value(r, "hexq_task_end_to_end_seconds_sum", **labels, priority="high",
                 status="succeeded") == pytest.approx(0.75)
    assert value(r, "hexq_task_attempts_count", type="echo", status="succeeded") == 1


def test_retries_are_told_apart_by_what_ended_the_attempt() -> None:
    events, r = observer()
    task = running(max_attempts=3)
    events.finished(task, replaced(task, status=TaskStatus.SCHEDULED, error="boom"), 0.1)
    events.finished(task, replaced(task, status=TaskStatus.SCHEDULED, error="timeout: exceeded 1s"), 1.0)
    events.recovered(replaced(task, status=TaskStatus.SCHEDULED, error="lease expired"))

    for reason in ("error", "timeout", "lease_expired"):
        assert value(r, "hexq_task_retries_total", type="echo", queue="default", reason=reason) == 1
    assert value(r, "hexq_tasks_processed_total", type="echo", queue="default", priority="high", status="failed") == 2
    assert value(r, "hexq_lease_recoveries_total", type="echo", queue="default") == 1
    assert value(r, "hexq_task_end_to_end_seconds_count", type="echo", queue="default", priority="high",
                 status="failed") == 0  # not final yet


def test_dead_cancelled_released_and_the_rest() -> None:
    events, r = observer()
    task = running(attempts=3)
    events.finished(task, replaced(task, status=TaskStatus.DEAD), 0.1)
    events.finished(task, task.moved_to(TaskStatus.CANCELLED), 0.1)
    events.finished(task, task.moved_to(TaskStatus.QUEUED), 0.1)
    events.cancelled(running(status=TaskStatus.CANCELLED))
    events.replayed([task, task])
    events.fenced("settle", task)
    events.rejected("body_too_large")
    events.schedule_fired("nightly", 0.2)
    events.rate_waited("echo", 0.05)

    assert value(r, "hexq_tasks_dead_lettered_total", type="echo", queue="default") == 1
    assert value(r, "hexq_tasks_cancelled_total", type="echo", queue="default") == 2
    assert value(r, "hexq_tasks_processed_total", type="echo", queue="default", priority="high",
                 status="released") == 1
    assert value(r, "hexq_task_attempts_sum", type="echo", status="dead") == 3
    assert value(r, "hexq_dead_letter_replays_total", type="echo", queue="default") == 2
    assert value(r, "hexq_fencing_rejections_total", op="settle") == 1
    assert value(r, "hexq_submit_rejections_total", reason="body_too_large") == 1
    assert value(r, "hexq_schedule_fires_total", schedule="nightly") == 1
    assert value(r, "hexq_schedule_lag_seconds_count") == 1
    assert value(r, "hexq_type_rate_limit_waits_total", type="echo") == 1
    assert value(r, "hexq_type_rate_limit_wait_seconds_sum") == pytest.approx(0.05)


def test_unknown_types_and_queues_count_as_other() -> None:
    events, r = observer()
    for i in range(50):
        task = running(type=f"t{i}", queue=f"q{i}")
        events.started(task)
        events.finished(task, task.moved_to(TaskStatus.SUCCEEDED), 0.01)
    assert value(r, "hexq_tasks_processed_total", type="other", queue="other", priority="high",
                 status="succeeded") == 50
    names = {s.labels.get("type") for m in r.collect() for s in m.samples} - {None}
    assert names == {"other"}


def test_an_observer_that_fails_does_not_raise(caplog: pytest.LogCaptureFixture) -> None:
    events, _ = observer()
    events.started(running(started_at="not a time"))
    events.finished(running(), running(), "nan")  # type: ignore[arg-type]
    assert "could not be counted" in caplog.text


# -- state gauges ----------------------------------------------------------------------------------------
def samples(state: State) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in StateCollector(state).collect() for s in family.samples}


def test_state_gauges_come_from_the_backend_stats() -> None:
    stats = Stats(depth={("mail", Priority.LOW, "dead"): 2, ("default", Priority.HIGH, "queued"): 3},
                  oldest_age={("default", Priority.HIGH): 12.5})
    got = samples(State(True, stats, workers=4, queues=("default",)))

    assert got[("hexq_queue_depth", (("priority", "high"), ("queue", "default"), ("state", "queued")))] == 3
    assert got[("hexq_queue_depth", (("priority", "low"), ("queue", "default"), ("state", "running")))] == 0
    assert got[("hexq_queue_depth", (("priority", "low"), ("queue", "mail"), ("state", "dead")))] == 2
    assert got[("hexq_queue_oldest_age_seconds", (("priority", "high"), ("queue", "default")))] == 12.5
    assert got[("hexq_dead_letter_tasks", (("queue", "mail"),))] == 2
    assert got[("hexq_dead_letter_tasks", (("queue", "default"),))] == 0
    assert got[("hexq_workers_live", ())] == 4
    assert got[("hexq_backend_up", ())] == 1


def test_a_backend_that_does_not_answer_is_down_and_nothing_else() -> None:
    assert samples(State(False, queues=("default",))) == {("hexq_backend_up", ()): 0.0}


# -- the timed backend keeps the backend's optional ports ----------------------------------------------
def test_the_timed_backend_keeps_settle_and_claim_only_where_the_backend_has_it(container: Container) -> None:
    assert isinstance(container.backend, TimedSettleAndClaim)
    assert _settle_and_claim(container.backend) is container.backend
    assert isinstance(container.backend, SettleAndClaim)

    class Plain:  # a backend without settle_and_claim or wait_finished
        async def settle(self) -> None: ...

    timed = container.metrics.timed(Plain())  # type: ignore[union-attr, arg-type]
    assert type(timed) is TimedBackend and _settle_and_claim(timed) is None
    assert not isinstance(timed, FinishWaiter)


async def test_backend_operations_are_timed(container: Container) -> None:
    await container.tasks.stats()
    assert value(container.metrics.registry, "hexq_backend_op_duration_seconds_count", op="stats") == 1  # type: ignore[union-attr]


def test_metrics_off_builds_nothing(make_container: Callable[..., Container]) -> None:
    off = make_container(metrics="off")
    assert off.metrics is None and not isinstance(off.backend, TimedBackend)


# -- /metrics and HTTP ---------------------------------------------------------------------------------
def test_route_templates_drop_convertors() -> None:
    assert template("/v1/tasks/{id:task_id}:cancel") == "/v1/tasks/{id}:cancel"
    assert template("/v1/schedules/{name}") == "/v1/schedules/{name}"


def test_requests_are_counted_by_route_template_never_by_raw_path(client: TestClient, container: Container) -> None:
    client.get("/v1/tasks/abc123")
    client.get("/v1/tasks/def456")
    client.get("/no/such/path")
    client.post("/v1/tasks", json={"type": "echo", "payload": {}})
    r = container.metrics.registry  # type: ignore[union-attr]
    assert value(r, "hexq_http_requests_total", method="GET", route="/v1/tasks/{id}", status="404") == 2
    assert value(r, "hexq_http_requests_total", method="GET", route="other", status="404") == 1
    assert value(r, "hexq_http_requests_total", method="POST", route="/v1/tasks", status="202") == 1
    assert value(r, "hexq_http_request_duration_seconds_count", method="GET", route="/v1/tasks/{id}") == 2
    body = client.get("/metrics").text
    assert "abc123" not in body and 'route="/v1/tasks/{id}"' in body


def test_refusals_before_the_service_are_counted_once(client: TestClient, container: Container) -> None:
    client.post("/v1/tasks", content=b"{nope")
    client.post("/v1/tasks", json={"type": "echo", "payload": {}, "bogus": 1})  # wire: validation
    client.post("/v1/tasks", json={"type": "no_such_type", "payload": {}})  # the service: unknown_type
    client.post("/v1/tasks:bulk", json={"tasks": "no"})
    r = container.metrics.registry  # type: ignore[union-attr]
    assert value(r, "hexq_submit_rejections_total", reason="bad_json") == 1
    assert value(r, "hexq_submit_rejections_total", reason="validation") == 2
    assert value(r, "hexq_submit_rejections_total", reason="unknown_type") == 1


@pytest.fixture
def keyed(make_container: Callable[..., Container], make_client: ClientFactory) -> TestClient:
    keys = ",".join([entry("prom", "*", [Scope.METRICS], SECRET),
                     entry("app", "acme", [Scope.SUBMIT, Scope.READ], SECRET + "a"),
                     entry("ops", "*", [Scope.ADMIN], SECRET + "b")])
    return make_client(make_container(api_keys=keys, rate="0"))


def test_metrics_needs_the_metrics_scope_when_keys_are_configured(keyed: TestClient) -> None:
    assert keyed.get("/metrics").status_code == 401
    assert keyed.get("/metrics", headers={"Authorization": f"Bearer {SECRET}a"}).status_code == 403
    assert keyed.get("/metrics", headers={"Authorization": f"Bearer {SECRET}"}).status_code == 200
    assert keyed.get("/metrics", headers={"Authorization": f"Bearer {SECRET}b"}).status_code == 200  # admin
    assert keyed.get("/v1/tasks", headers={"Authorization": f"Bearer {SECRET}"}).status_code == 403
    # a submit refused for its key counts as a refused submit
    keyed.post("/v1/tasks", json={"type": "echo", "payload": {}})
    body = keyed.get("/metrics", headers={"Authorization": f"Bearer {SECRET}"}).text
    assert 'hexq_submit_rejections_total{reason="unauthorized"} 1.0' in body


def test_metrics_is_open_without_keys_and_serves_openmetrics_when_asked(client: TestClient) -> None:
    plain = client.get("/metrics")
    assert plain.status_code == 200 and plain.headers["content-type"].startswith("text/plain")
    assert "hexq_backend_up 1.0" in plain.text and "hexq_build_info{" in plain.text
    open_metrics = client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert open_metrics.headers["content-type"].startswith("application/openmetrics-text")
    assert open_metrics.text.endswith("# EOF\n")


async def test_a_real_scrape_passes_promtool(client: TestClient, container: Container, clock: FakeClock,
                                             promtool: str) -> None:
    client.post("/v1/tasks", json={"type": "echo", "payload": {"x": 1}})
    client.post("/v1/tasks", json={"type": "boom", "payload": {}, "max_attempts": 1})
    await container.invocation("w1").run()
    scraped = client.get("/metrics").text
    assert 'hexq_tasks_processed_total{priority="normal",queue="default",status="succeeded",type="echo"} 1.0' in scraped
    checked = await asyncio.to_thread(subprocess.run, [promtool, "check", "metrics"], input=scraped,
                                      capture_output=True, text=True, timeout=60, check=False)
    assert checked.returncode == 0 and not checked.stdout.strip(), checked.stdout + checked.stderr


def test_types_registered_in_the_registry_are_labels(registry: Registry) -> None:
    assert {"echo", "boom"} <= {spec.name for spec in registry}

"""The shipped Grafana dashboard and alert rules against a real Prometheus scraping a real `hexq serve`.

One `hexq serve` (SQLite in a temp dir, 2 worker processes, 127.0.0.1 on a free port) runs a mixed
workload over HTTP: successes at two priorities, a task that fails once and succeeds on the retry, one
that is dead after its attempts (then replayed and dead again), one that stalls its worker past the lease
(lease recovery, then a settle refused by fencing), a long sleeper (running), delayed tasks (scheduled;
one cancelled), tasks parked on a queue no worker serves (queued backlog, oldest age), submits refused
(unknown type, bad payload) and a `@every 1s` schedule. Debian's `prometheus` (tests/integration/
prometheus_server.py) scrapes its /metrics every second and evaluates infra/prometheus/hexq-alerts.yaml.

Then:
- every target of every panel in infra/grafana/dashboards/hexq.json, with Grafana's variables filled in,
  parses and draws data (a range query over the run returns a series with a finite value);
- every alert expression parses, and Prometheus loaded and evaluated the rule group with health "ok";
- every hexq metric the dashboard or the alerts name is one the server exports;
- a scrape of /metrics passes `promtool check metrics` with nothing to say.

Failures name the panel (title, id, refId) or the alert, the expression as sent, and Prometheus's answer.
Skips without Prometheus locally; fails in CI (CI=true), like the Redis tests.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import prometheus_server
import pytest
import yaml
from processes import stop, wait_healthy

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "infra" / "grafana" / "dashboards" / "hexq.json"
ALERTS = REPO / "infra" / "prometheus" / "hexq-alerts.yaml"
JOB = "hexq-api"  # matches the alert HexqTargetDown's up{job=~"hexq.*"}
LEASE = 2.0
STALL = 2 * LEASE + 1  # seconds prom_stall blocks its worker's loop: the lease expires, is recovered
ENV = {"HEXQ_TASKS": "hexq.functions.examples,tests.integration.prom_tasks", "HEXQ_LEASE": f"{LEASE:g}",
       "HEXQ_GRACE": "1", "HEXQ_CONCURRENCY": "4", "HEXQ_POLL_INTERVAL": "0.2", "HEXQ_IDLE_WAIT": "0.5",
       "HEXQ_LOG_LEVEL": "INFO",
       "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)}
PARKED = "parked"  # a queue no worker serves: what is submitted there stays queued

# Grafana's built-in variables, as it would fill them for this run (scrape interval 1 s; Grafana's own
# $__rate_interval would be max(4 x scrape interval, step + scrape interval), here a little wider).
RATE_INTERVAL = "10s"
INTERVAL = "1s"

# Panel targets that may return nothing in a short healthy run: (panel title, refId) -> why. Keep this
# empty unless the event cannot be driven here; every entry is a panel a user may see blank.
MAY_BE_EMPTY: dict[tuple[str, str], str] = {}


# Alerts the workload must set off (they have no `for:`), and alerts a healthy server must not.
# A counter whose series is born at its first increment shows increase() == 0 until it grows again;
# HexqFencingRejections fires on the first fencing only if hexq exports the counter at 0 beforehand.
FIRING = {"HexqDeadLettersGrowing": "2 tasks were dead-lettered (and again after a replay)",
          "HexqFencingRejections": "a stalled worker settled with a stale lease token (needs "
                                   "hexq_fencing_rejections_total exported at 0 before the first one)"}
QUIET = ("HexqBacklogWithoutWorkers", "HexqBackendDown", "HexqTargetDown")


# -- the dashboard and the rules, as Grafana and Prometheus would send them -----------------------------
@dataclass(frozen=True)
class Target:
    panel: str
    panel_id: int
    ref: str
    expr: str

    def name(self) -> str:
        return f"panel {self.panel!r} (id {self.panel_id}) target {self.ref}"


def dashboard_targets() -> list[Target]:
    dashboard = json.loads(DASHBOARD.read_text())

    def walk(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in panels:
            yield panel
            yield from walk(panel.get("panels", []))  # a collapsed row carries its panels

    return [Target(panel.get("title", ""), panel["id"], target.get("refId", "?"), target["expr"])
            for panel in walk(dashboard["panels"]) for target in panel.get("targets", []) if target.get("expr")]


def alert_rules() -> list[tuple[str, str]]:
    rules = yaml.safe_load(ALERTS.read_text())
    return [(rule.get("alert") or rule["record"], rule["expr"].strip()) for group in rules["groups"]
            for rule in group["rules"]]


def concrete(expr: str, queue: str, range_seconds: int) -> str:
    """`expr` with Grafana's variables replaced: $queue / ${queue} / ${queue:regex} by a regex, and the
    interval variables by durations. A variable left over fails loudly rather than reaching Prometheus."""
    values = {"queue": queue, "__rate_interval": RATE_INTERVAL, "__interval": INTERVAL,
              "__range": f"{range_seconds}s", "__range_s": str(range_seconds), "__interval_ms": "1000"}

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise KeyError(f"unknown Grafana variable ${name} in {expr!r}")
        return values[name]

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", value, expr)


def finite_values(answer: dict[str, Any]) -> int:
    """How many finite sample values an instant or range query answered."""
    data = answer.get("data", {})
    kind, result = data.get("resultType"), data.get("result", [])
    if kind == "matrix":
        samples = [value for series in result for _, value in series["values"]]
    elif kind == "vector":
        samples = [series["value"][1] for series in result]
    elif kind == "scalar":
        samples = [result[1]]
    else:
        samples = []
    return sum(1 for value in samples if math.isfinite(float(value)))


def said(answer: dict[str, Any]) -> str:
    if answer.get("status") != "success":
        return f"{answer.get('errorType')}: {answer.get('error')}"
    result = answer["data"]["result"]
    if not result:
        return "an empty result (no series)"
    return f"{len(result)} series but no finite value (all NaN/Inf): {json.dumps(result)[:300]}"


# -- the live run -----------------------------------------------------------------------------------------
@dataclass
class Live:
    url: str
    prom: prometheus_server.Prometheus
    started: float  # wall-clock seconds, before the first task was submitted

    def window(self) -> tuple[float, float, int]:
        """start, end and the whole run in seconds (Grafana's $__range for a dashboard showing the run)."""
        end = time.time()
        return self.started - 2, end, math.ceil(end - self.started) + 2


def post(client: httpx.Client, path: str, body: dict[str, Any], expect: int = 202) -> dict[str, Any]:
    response = client.post(path, json=body)
    assert response.status_code == expect, f"POST {path} {body}: {response.status_code} {response.text}"
    answer: dict[str, Any] = response.json() if response.content else {}
    return answer


def wait_until(check: Any, timeout: float, what: str, log: Any) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}; hexq log:\n{log()[-3000:]}")
        time.sleep(0.1)


def run_workload(client: httpx.Client, log: Any) -> None:
    """Every outcome the dashboard shows, in a few seconds."""
    submit: list[dict[str, Any]] = [{"type": "echo", "payload": {"i": i}, "priority": ("normal", "high")[i % 2]}
                                    for i in range(30)]
    submit += [{"type": "prom_flaky", "priority": "high"} for _ in range(3)]
    submit += [{"type": "prom_doomed"} for _ in range(2)]
    submit += [{"type": "prom_stall", "payload": {"seconds": STALL}}]
    finishing = [post(client, "/v1/tasks", body)["id"] for body in submit]
    post(client, "/v1/tasks", {"type": "sleep", "payload": {"seconds": 60}})  # running all along
    later = [post(client, "/v1/tasks", {"type": "echo", "delay": 3600, "priority": priority})["id"]
             for priority in ("normal", "high")]
    post(client, f"/v1/tasks/{later[0]}:cancel", {}, expect=200)
    for priority in ("normal", "high"):
        post(client, "/v1/tasks", {"type": "echo", "queue": PARKED, "priority": priority})
    key = {"type": "echo", "payload": {"once": True}, "idempotency_key": "prom-once"}
    post(client, "/v1/tasks", key)
    post(client, "/v1/tasks", key, expect=200)  # the same key answers with the original task
    post(client, "/v1/tasks", {"type": "no_such_type"}, expect=422)
    post(client, "/v1/tasks", {"type": "sleep", "payload": {"seconds": -1}}, expect=422)
    response = client.put("/v1/schedules/prom-tick", json={"spec": "@every 1s", "type": "echo", "priority": "high"})
    assert response.status_code == 200, response.text

    def status(task_id: str) -> str:
        return str(client.get(f"/v1/tasks/{task_id}").json()["status"])

    def settled(ids: list[str]) -> bool:
        return all(status(i) in ("succeeded", "dead", "cancelled") for i in ids)

    wait_until(lambda: settled(finishing), 30, "the workload to settle", log)
    stalled = time.monotonic()
    doomed = [t["id"] for t in client.get("/v1/dead").json()["tasks"]]
    assert len(doomed) == 2, doomed
    post(client, "/v1/dead:replay", {"ids": doomed}, expect=200)
    wait_until(lambda: all(status(i) == "dead" for i in doomed), 20, "the replayed tasks to be dead again", log)
    statuses = {i: status(i) for i in finishing}
    assert sorted(statuses.values()).count("dead") == 2, statuses
    # The stalled attempt wakes after its `seconds` and settles with its stale token (refused).
    time.sleep(max(0.0, stalled + STALL - LEASE - time.monotonic()) + 0.5)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    prometheus_server.binary("prometheus")  # skip (or fail in CI) before starting anything
    tmp = tmp_path_factory.mktemp("prometheus-live")
    port = prometheus_server.free_port()
    url = f"http://127.0.0.1:{port}"
    err = (tmp / "hexq.err").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "hexq.functions.cli", "serve", "--port", str(port), "--workers", "2",
         "--backend", f"sqlite:///{tmp / 'hexq.db'}"],
        cwd=tmp, env={**os.environ, **ENV}, stdout=subprocess.DEVNULL, stderr=err)

    def log() -> str:
        return (tmp / "hexq.err").read_text(errors="replace")

    try:
        wait_healthy(process, url, log)
        with prometheus_server.running(tmp / "prometheus", {JOB: f"127.0.0.1:{port}"}, rule_files=[ALERTS]) as prom:
            # A first scrape before any event, as a running Prometheus has: a counter's first increase is then
            # an increase (the alerts on dead letters and fencing need it; hexq exports them at 0 from the start).
            prom.wait_for(f'up{{job="{JOB}"}} == 1', 15, f"Prometheus to scrape {url}/metrics")
            started = time.time()
            with httpx.Client(base_url=url, trust_env=False, timeout=10.0) as client:
                run_workload(client, log)
            done = time.time()
            # Not fatal here: if it never comes, the tests below say precisely which names are missing.
            prom.wait_until("hexq_tasks_processed_total", 10)
            # Two scrapes after the last event, so the last rate windows hold it, and the rules evaluated.
            prom.wait_for(f'timestamp(up{{job="{JOB}"}}) > {done + 2:.3f}', 10, "two scrapes after the workload")
            yield Live(url, prom, started)
    finally:
        stop(process, 10)
        err.close()


# -- the tests --------------------------------------------------------------------------------------------
def queue_regexes(live: Live) -> tuple[dict[str, str], list[str]]:
    """$queue as Grafana sends it: All (the variable's allValue, .*) and every value of the variable's
    query selected (a multi-value variable in a =~ matcher is rendered (a|b)); and what is wrong with
    the variable's query, label_values(hexq_queue_depth, queue)."""
    answer = live.prom.api("label/queue/values", **{"match[]": "hexq_queue_depth"})
    queues = answer.get("data") or []
    if not {"default", PARKED} <= set(queues):
        return {"All": ".*"}, [f"the $queue variable's label_values(hexq_queue_depth, queue) lists {queues}, "
                               f"not the queues default and {PARKED}: {answer}"]
    return {"All": ".*", "every queue selected": "(" + "|".join(re.escape(q) for q in queues) + ")"}, []


def test_every_panel_target_parses_and_draws_data(live: Live) -> None:
    start, end, range_seconds = live.window()
    selections, problems = queue_regexes(live)
    for selection, queue in selections.items():
        for target in dashboard_targets():
            if selection != "All" and not re.search(r"\$\{?queue\b", target.expr):
                continue  # the same query again
            expr = concrete(target.expr, queue, range_seconds)
            instant = live.prom.query(expr)
            if instant.get("status") != "success":
                problems.append(f"{target.name()} ($queue={selection}) does not parse:\n    expr: {expr}\n"
                                f"    Prometheus: {said(instant)}")
                continue
            drawn = live.prom.query_range(expr, start, end, step=1.0)
            if finite_values(drawn) == 0 and (target.panel, target.ref) not in MAY_BE_EMPTY:
                problems.append(f"{target.name()} ($queue={selection}) draws nothing over the run:\n"
                                f"    expr: {expr}\n    Prometheus: {said(drawn)}")
    assert not problems, f"{len(problems)} dashboard queries failed:\n" + "\n".join(problems)


def test_every_alert_expression_parses_and_the_rules_are_loaded_and_healthy(live: Live) -> None:
    problems = []
    for name, expr in alert_rules():
        answer = live.prom.query(expr)
        if answer.get("status") != "success":
            problems.append(f"alert {name}: expr {expr!r}: {said(answer)}")
    groups = live.prom.api("rules")["data"]["groups"]
    loaded = {rule["name"]: rule for group in groups for rule in group["rules"]}
    for name, _ in alert_rules():
        rule = loaded.get(name)
        if rule is None:
            problems.append(f"alert {name}: not loaded by Prometheus (loaded: {sorted(loaded)})")
        elif rule["health"] != "ok" or rule.get("lastError"):
            problems.append(f"alert {name}: health {rule['health']!r}, lastError {rule.get('lastError')!r}")
        elif rule.get("lastEvaluation", "").startswith("0001-"):
            problems.append(f"alert {name}: never evaluated")
    # Alerts without `for:` fire at once on what the workload did; the health alerts stay quiet.
    for name, why in FIRING.items():
        if not live.prom.wait_until(f'ALERTS{{alertname="{name}",alertstate="firing"}}', 8):
            expr = dict(alert_rules())[name]
            problems.append(f"alert {name} is not firing, though {why}:\n    expr: {expr}\n"
                            f"    now: {json.dumps(live.prom.query(expr).get('data'))[:300]}")
    for name in QUIET:
        alerts = live.prom.query(f'ALERTS{{alertname="{name}"}}')["data"]["result"]
        if alerts:
            problems.append(f"alert {name} is pending or firing on a healthy server: {json.dumps(alerts)[:300]}\n"
                            f"    expr: {dict(alert_rules())[name]}")
    assert not problems, "\n".join(problems)
    # the HexqTargetDown alert watches this very target
    assert live.prom.series_count('up{job=~"hexq.*"}') == 1


def test_every_metric_the_dashboard_and_alerts_name_is_exported(live: Live) -> None:
    users: dict[str, set[str]] = {}
    for target in dashboard_targets():
        for metric in re.findall(r"\bhexq_[a-z0-9_]+\b", target.expr):
            users.setdefault(metric, set()).add(target.name())
    for name, expr in alert_rules():
        for metric in re.findall(r"\bhexq_[a-z0-9_]+\b", expr):
            users.setdefault(metric, set()).add(f"alert {name}")
    missing = {metric: sorted(used) for metric, used in users.items()
               if live.prom.series_count(f'{{__name__="{metric}"}}') == 0}
    exported = sorted(n for n in live.prom.api("label/__name__/values")["data"] if n.startswith("hexq_"))
    assert not missing, (f"named but not exported: {json.dumps(missing, indent=1)}\n"
                         f"exported hexq metrics: {exported}")


def test_a_scrape_passes_promtool_check_metrics(live: Live) -> None:
    promtool = prometheus_server.binary("promtool")
    with httpx.Client(trust_env=False, timeout=10.0) as client:
        response = client.get(f"{live.url}/metrics")
    assert response.status_code == 200, response.text[:500]
    assert response.headers["content-type"].startswith("text/plain"), response.headers["content-type"]
    checked = subprocess.run([promtool, "check", "metrics"], input=response.content, capture_output=True,
                             timeout=30, check=False)
    output = (checked.stdout + checked.stderr).decode(errors="replace")
    assert checked.returncode == 0 and not output.strip(), f"promtool check metrics ({checked.returncode}):\n{output}"
    assert b"hexq_tasks_processed_total" in response.content

"""infra/prometheus and infra/grafana, offline: the Prometheus config and alert rules pass promtool (with
the rules' own unit tests), and the Grafana dashboard is structurally sound with PromQL that parses.

Grafana cannot be installed here, so the dashboard is checked as JSON; tests/integration/test_prometheus_live.py
runs every panel's query against a real Prometheus scraping a real `hexq serve`.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "infra" / "prometheus"
GRAFANA = ROOT / "infra" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "hexq.json"


def run(promtool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())  # type: ignore[no-any-return]


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def exprs(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in panels(dashboard) for t in p["targets"]]


def concrete(expr: str) -> str:
    """A dashboard expression as Grafana would send it: its variables replaced by values."""
    return expr.replace("$__rate_interval", "1m").replace("$__range", "1h").replace("$queue", ".*")


# -- Prometheus -----------------------------------------------------------------------------------------
def test_the_prometheus_config_is_valid(promtool: str, tmp_path: Path) -> None:
    syntax = run(promtool, "check", "config", "--syntax-only", "prometheus.yml", cwd=PROMETHEUS)
    assert syntax.returncode == 0, syntax.stdout + syntax.stderr
    # In full, with the scrape key file (docker-compose.yml mounts one) in a place that exists.
    key = tmp_path / "key"
    key.write_text("hexq_secret\n")
    (tmp_path / "prometheus.yml").write_text((PROMETHEUS / "prometheus.yml").read_text()
                                             .replace("/etc/prometheus/hexq-metrics-key", str(key)))
    shutil.copy(PROMETHEUS / "hexq-alerts.yaml", tmp_path)
    full = run(promtool, "check", "config", "prometheus.yml", cwd=tmp_path)
    assert full.returncode == 0 and "SUCCESS" in full.stdout, full.stdout + full.stderr


def test_the_alert_rules_are_valid_and_their_unit_tests_pass(promtool: str) -> None:
    checked = run(promtool, "check", "rules", "hexq-alerts.yaml", cwd=PROMETHEUS)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = run(promtool, "test", "rules", "hexq-alerts.test.yaml", cwd=PROMETHEUS)
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr


def test_every_alert_has_a_unit_test_that_fires_it() -> None:
    rules = yaml.safe_load((PROMETHEUS / "hexq-alerts.yaml").read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    tests = yaml.safe_load((PROMETHEUS / "hexq-alerts.test.yaml").read_text())
    fired = {case["alertname"] for test in tests["tests"] for case in test.get("alert_rule_test", [])
             if case.get("exp_alerts")}
    assert alerts == fired


# -- Grafana --------------------------------------------------------------------------------------------
def test_the_dashboard_has_unique_ids_and_a_pinned_schema(dashboard: dict[str, Any]) -> None:
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert dashboard["uid"] == "hexq-overview" and isinstance(dashboard["schemaVersion"], int)


def test_panels_sit_on_the_24_column_grid_without_overlapping(dashboard: dict[str, Any]) -> None:
    taken: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {(grid["y"] + dy, grid["x"] + dx) for dy in range(grid["h"]) for dx in range(grid["w"])}
        assert not cells & taken, f"{panel['title']!r} overlaps another panel"
        taken |= cells


def test_every_query_goes_through_the_datasource_variable(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for panel in panels(dashboard):
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"]), panel["title"]
    assert variables["queue"]["datasource"]["uid"] == "${datasource}"


def test_every_panel_has_a_unit_and_a_description(dashboard: dict[str, Any]) -> None:
    for panel in panels(dashboard):
        unit = panel["fieldConfig"]["defaults"]["unit"]
        assert unit in {"s", "ops", "reqps", "percentunit", "short"}, (panel["title"], unit)
        assert panel["description"], panel["title"]
        if "seconds" in " ".join(t["expr"] for t in panel["targets"]) and "histogram_quantile" in panel[
                "targets"][0]["expr"]:
            assert unit == "s", panel["title"]  # a quantile of a _seconds histogram is a time


def test_every_query_is_promql_that_parses(promtool: str, dashboard: dict[str, Any], tmp_path: Path) -> None:
    # promtool parses the expression of every recording rule it checks: one rule per panel query.
    rules = {"groups": [{"name": "dashboard", "rules": [{"record": f"hexq:panel_{i}", "expr": concrete(e)}
                                                         for i, e in enumerate(exprs(dashboard))]}]}
    (tmp_path / "dashboard.rules.yaml").write_text(yaml.safe_dump(rules))
    checked = run(promtool, "check", "rules", "dashboard.rules.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_dashboard_asks_for_hexq_metrics_only(dashboard: dict[str, Any]) -> None:
    names = {name for e in exprs(dashboard) for name in re.findall(r"\b(hexq_[a-z_]+)", e)}
    assert names and all(name.startswith("hexq_") for name in names)
    assert {"hexq_task_queue_wait_seconds_bucket", "hexq_queue_depth", "hexq_workers_live"} <= names


def test_provisioning_points_at_the_dashboard_and_the_datasource_uid(dashboard: dict[str, Any]) -> None:
    datasources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yaml").read_text())
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "hexq.yaml").read_text())
    [source] = datasources["datasources"]
    assert source["type"] == "prometheus" and source["uid"] == dashboard["templating"]["list"][0]["current"]["value"]
    [provider] = providers["providers"]
    assert provider["type"] == "file" and provider["options"]["path"] == "/var/lib/grafana/dashboards"


# -- docker-compose (documented; no Docker engine with a registry here to run it) ------------------------
def test_the_compose_stack_runs_every_part_on_loopback_ports() -> None:
    compose = yaml.safe_load((ROOT / "infra" / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"redis", "api", "worker-1", "worker-2", "poller", "prometheus", "grafana"}
    for name, service in services.items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)
    assert services["api"]["command"][0] == "api" and "HEXQ_API_KEYS" in services["api"]["environment"]
    for name in ("worker-1", "worker-2", "poller"):
        assert "--metrics-port" in services[name]["command"], name
    mounted = {volume.split(":")[0] for volume in services["prometheus"]["volumes"] + services["grafana"]["volumes"]}
    for path in ("./prometheus/prometheus.yml", "./prometheus/hexq-alerts.yaml", "./grafana/provisioning",
                 "./grafana/dashboards"):
        assert path in mounted and (ROOT / "infra" / path).exists(), path
    scraped = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())["scrape_configs"]
    targets = {t for job in scraped for config in job["static_configs"] for t in config["targets"]}
    assert targets == {"api:8000", "worker-1:9464", "worker-2:9464", "poller:9464"}

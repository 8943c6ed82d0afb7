"""`hexq experiment NAME --quick` against real worker processes: the qualitative result of each, and its files.

priority, scaling, retries and recovery run on SQLite and on Redis (the backend_url fixture); baseline, load
and stress on SQLite. Each asserts what the experiment is for (README "Experiments"), not exact timings,
except recovery's bound, which is the lease plus the poll interval with a second's slack for a loaded machine.
"""

from __future__ import annotations

import asyncio
import csv
import json
from pathlib import Path
from typing import Any

import pytest

from hexq.functions.cli import main
from hexq.functions.experiment.options import Options
from hexq.functions.experiment.result import Result
from hexq.functions.experiment.runner import run_experiment

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def run(name: str, backend: str, out: Path) -> tuple[Path, Result]:
    directory, results = asyncio.run(run_experiment(Options(name, backend=backend, out=out, quick=True, seed=1,
                                                            timeout=60), name))
    assert [r.complete for r in results] == [True]
    return directory, results[0]


def files(directory: Path) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """Every file written and parseable, every figure the report links present; the summary and the rows."""
    config = json.loads((directory / "config.json").read_text())
    assert config["seed"] == 1 and config["quick"] is True and config["machine"]["cores"] >= 1
    assert "load_average" in config["machine"] and "load_average_after" in config
    summary = json.loads((directory / "summary.json").read_text())
    with (directory / "tasks.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert rows and all(r["created_at"] for r in rows)
    report = (directory / "report.md").read_text()
    pngs = sorted(p.name for p in directory.glob("*.png"))
    assert pngs and all(f"]({png})" in report for png in pngs)
    assert all(png.read_bytes().startswith(b"\x89PNG") for png in directory.glob("*.png"))
    return summary, rows


def test_priority_lets_short_tasks_overtake_long_ones(backend_url: str, tmp_path: Path) -> None:
    directory, result = run("priority", backend_url, tmp_path)
    summary, rows = files(directory)
    h = result.headline
    assert h["short_p95_priority_ms"] is not None and h["short_p95_fifo_ms"] is not None
    assert h["short_p95_priority_ms"] < 0.5 * h["short_p95_fifo_ms"]
    assert len(rows) == 2 * 60 and {r["status"] for r in rows} == {"succeeded"}
    assert {r["priority"] for r in rows if r["policy"] == "fifo"} == {"normal"}
    assert {r["priority"] for r in rows if r["policy"] == "priority" and r["cls"] == "short"} == {"high"}
    assert summary["headline"][0] == h


def test_scaling_io_bound_work_with_more_workers_raises_throughput(backend_url: str, tmp_path: Path) -> None:
    directory, result = run("scaling", backend_url, tmp_path)
    files(directory)
    points = result.summary["by_kind"]["io"]["points"]
    assert [p["workers"] for p in points] == [1, 2, 4]
    assert all(p["tasks"] == 24 for p in points)
    x1, x2, x4 = (p["throughput"] for p in points)
    assert x1 < x2 < x4 and x4 > 2 * x1  # ideal is 4×; sleeping workers scale until the backend is the limit
    assert result.summary["by_kind"]["io"]["usl"] is not None


def test_retries_follow_the_configured_policy(backend_url: str, tmp_path: Path) -> None:
    directory, result = run("retries", backend_url, tmp_path)
    _, rows = files(directory)
    s = result.summary
    for p, v in s["by_probability"].items():
        assert v["tasks"] == 60
        assert set(v["attempts_observed"]) == {1, 2, 3, 4, 5}  # never more attempts than max_attempts
        assert v["dead_with_all_attempts"]
        assert v["total_variation"] < 0.2, (p, v)  # the attempts histogram matches the truncated geometric
    assert {r["status"] for r in rows} <= {"succeeded", "dead"}
    assert all(int(r["attempts"]) == 5 for r in rows if r["status"] == "dead" and r["phase"] != "outage")
    assert s["backoff"]["retries"] > 0 and s["backoff"]["delays_in_envelope"] == s["backoff"]["retries"]
    assert s["outage"]["tasks"] == 80 and s["outage"]["peak_attempts_per_s_during"] > 0


def test_recovery_within_lease_and_poll_interval_with_nothing_lost(backend_url: str, tmp_path: Path) -> None:
    directory, result = run("recovery", backend_url, tmp_path)
    files(directory)
    h, kill = result.headline, result.summary["phases"]["kill"]
    assert h["not_succeeded"] == 0 and kill["succeeded"] == kill["tasks"] == 8
    assert h["lost_tasks_recovered"] == 4  # the killed worker held 4 (its concurrency)
    assert h["recovery_max_s"] is not None and h["bound_s"] is not None
    assert h["recovery_max_s"] <= h["bound_s"] + 1.0
    assert h["duplicates_kill"] == 0
    stall = result.summary["phases"]["stall"]
    assert stall["lost_attempts"] >= 1 and stall["succeeded"] == stall["tasks"]
    assert (h["fenced_heartbeats"] or 0) + (h["fenced_settles"] or 0) >= 1


def test_baseline_measures_from_the_scheduled_time_and_drops_the_warmup(tmp_path: Path) -> None:
    directory, result = run("baseline", f"sqlite:///{tmp_path / 'b.db'}", tmp_path)
    _, rows = files(directory)
    assert {r["status"] for r in rows} == {"succeeded"}
    warm = [r for r in rows if r["warmup"] == "True"]
    assert warm and result.summary["measured"] == len(rows) - len(warm)
    for r in rows:  # from the scheduled time: the submitter's lateness plus the backend's own interval
        assert float(r["to_start"]) == pytest.approx(float(r["wait"]) + float(r["late"]), abs=1e-5)
    assert result.headline["to_start_p50_ms"] is not None


def test_load_latency_climbs_past_capacity(tmp_path: Path) -> None:
    directory, result = run("load", f"sqlite:///{tmp_path / 'l.db'}", tmp_path)
    files(directory)
    levels = result.summary["levels"]
    assert [lv["fraction"] for lv in levels] == [0.25, 0.75, 1.5]
    assert result.summary["capacity"]["per_second"] > 0
    assert levels[-1]["to_finish_ms"]["p99"] > 2 * levels[0]["to_finish_ms"]["p99"]
    assert result.summary["knee"] is not None


def test_stress_backlog_grows_then_drains_and_the_api_answers(tmp_path: Path) -> None:
    directory, result = run("stress", f"sqlite:///{tmp_path / 's.db'}", tmp_path)
    files(directory)
    s = result.summary
    assert s["peak_backlog"] > 0 and s["drained_at_s"] is not None
    assert s["readyz_failures"] == 0
    with (directory / "timeline.csv").open() as file:
        assert len(list(csv.DictReader(file))) >= 4


def test_the_command_lists_experiments_and_prints_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["experiment", "list"]) == 0
    assert capsys.readouterr().out.split()[::1][0] == "priority"
    code = main(["experiment", "baseline", "--quick", "--json", "--backend", f"sqlite:///{tmp_path / 'c.db'}",
                 "--out", str(tmp_path / "out"), "--seed", "3"])
    document = json.loads(capsys.readouterr().out)
    assert code == 0 and document["experiment"] == "baseline" and document["complete"] is True
    assert Path(document["directory"]).parent == tmp_path / "out" / "baseline"


def test_memory_is_refused_with_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["experiment", "baseline", "--quick", "--backend", "memory://", "--out", str(tmp_path)]) == 2
    assert "memory://" in capsys.readouterr().err

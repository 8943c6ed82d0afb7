"""`hexq bench`, run in-process through `main([...])` with tiny numbers: the report's shape, never its timings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hexq.core.errors import ConfigurationError
from hexq.functions.bench.figures import percentiles, redact
from hexq.functions.bench.options import BenchOptions
from hexq.functions.bench.runner import backend_url
from hexq.functions.cli import main

TINY = ["--count", "200", "--rate", "100", "--duration", "1", "--concurrency", "50", "--connections", "4",
        "--timeout", "60"]
THROUGHPUT = {"tasks": int, "seconds": float, "per_second": float, "complete": bool}
PERCENTILES = ("p50", "p95", "p99", "max", "mean")


def bench(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    code = main(["bench", *TINY, "--json", *argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    report: dict[str, Any] = json.loads(out)
    return report


def check_report(report: dict[str, Any], ran: set[str]) -> None:
    assert report["complete"] is True
    assert isinstance(report["backend"], str) and isinstance(report["backend_kind"], str)
    assert isinstance(report["temporary_backend"], bool) and isinstance(report["notes"], list)
    assert isinstance(report["seconds"], float) and isinstance(report["started_at"], str)
    machine = report["machine"]
    assert isinstance(machine["cpu_model"], str) and machine["cores"] >= 1 and isinstance(machine["python"], str)
    assert isinstance(machine["load_average"], float)
    assert report["config"]["count"] == 200 and sorted(report["config"]["skipped"]) == report["config"]["skipped"]
    assert set(report["enqueue"]) == {"client", "http", "http_concurrent", "bulk"}
    for name, figures in report["enqueue"].items():
        if name.removesuffix("_concurrent") not in ran:
            assert figures is None, name
            continue
        _check_types(figures, THROUGHPUT)
        assert figures["tasks"] == 200 and figures["complete"] is True
        if name.startswith("http"):
            _check_types(figures, {"server_cpu_us_per_task": float, "client_cpu_us_per_task": float})
    _check_drain(report["drain"], "drain" in ran)
    _check_latency(report["latency"], "latency" in ran)


def _check_drain(drain: dict[str, Any] | None, ran: bool) -> None:
    if not ran:
        assert drain is None
        return
    assert drain is not None
    assert drain["drained"] == drain["tasks"] == 200 and drain["complete"] is True
    _check_types(drain, {"seconds": float, "per_second": float, "wall_seconds": float, "wall_per_second": float,
                         "startup_seconds": float, "cpu_seconds": float, "cpu_us_per_task": float,
                         "peak_rss_mb": float, "workers": int, "concurrency": int, "mode": str, "timing": str})
    assert drain["processes"]
    for process in drain["processes"]:
        _check_types(process, {"name": str, "cpu_seconds": float, "cpu_seconds_with_startup": float,
                               "peak_rss_mb": float})
        assert process["pid"] is None or isinstance(process["pid"], int)
        assert process["peak_rss_mb"] > 0


def _check_latency(latency: dict[str, Any] | None, ran: bool) -> None:
    if not ran:
        assert latency is None
        return
    assert latency is not None
    assert latency["tasks"] == latency["submitted"] == latency["completed"] == 100 and latency["complete"] is True
    _check_types(latency, {"rate": float, "duration": float, "achieved_rate": float, "mode": str})
    for key in ("submit_ms", "submit_to_start_ms", "submit_to_finish_ms"):
        assert set(latency[key]) == set(PERCENTILES)
        values = [latency[key][p] for p in PERCENTILES]
        assert all(isinstance(v, float) and v >= 0 for v in values), (key, values)
        assert latency[key]["p50"] <= latency[key]["p99"] <= latency[key]["max"]


def _check_types(figures: dict[str, Any], types: dict[str, type]) -> None:
    for key, kind in types.items():
        value = figures[key]
        ok = isinstance(value, int | float) and not isinstance(value, bool) if kind is float else (
            isinstance(value, kind))
        assert ok, (key, value)


# -- in this process only -----------------------------------------------------------------------
def test_memory_runs_every_phase_but_http_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    report = bench(capsys, "--backend", "memory://", "--skip", "http")
    check_report(report, {"client", "bulk", "drain", "latency"})
    assert report["backend"] == "memory://" and report["drain"]["mode"] == report["latency"]["mode"] == "in-process"
    assert report["drain"]["processes"][0]["pid"] is None
    assert any("memory://" in note for note in report["notes"])


def test_sqlite_enqueue_phases_use_a_temporary_file(capsys: pytest.CaptureFixture[str]) -> None:
    report = bench(capsys, "--skip", "http,drain,latency")
    check_report(report, {"client", "bulk"})
    assert report["backend_kind"] == "sqlite" and report["temporary_backend"] is True
    assert not Path(report["backend"].removeprefix("sqlite:///")).exists()  # removed with its directory


def test_the_table_names_every_phase(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", *TINY, "--backend", "memory://", "--skip", "http"])
    out = capsys.readouterr().out
    assert code == 0
    for words in ("enqueue: client", "enqueue: bulk", "drain: 2 in-process workers", "submit -> start", "p99"):
        assert words in out


@pytest.mark.parametrize("argv", [["--count", "0"], ["-n", "0"], ["--skip", "drain,nope"], ["--rate", "0"],
                                  ["--workers", "0"]])
def test_bad_options_are_usage_errors(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    assert main(["bench", "--backend", "memory://", *argv]) == 2
    assert capsys.readouterr().err


def test_options_refuse_what_cannot_run() -> None:
    with pytest.raises(ConfigurationError, match="--workers"):
        BenchOptions(workers=0)
    with pytest.raises(ConfigurationError, match="unknown: nope"):
        BenchOptions(skip=frozenset({"nope"}))
    with pytest.raises(ConfigurationError, match="--chunk"):
        BenchOptions(chunk=2000)


def test_backend_urls(tmp_path: Path) -> None:
    assert backend_url(None, tmp_path) == (f"sqlite:///{tmp_path}/bench.db", True)
    assert backend_url("sqlite", tmp_path)[1] is True
    assert backend_url("memory", tmp_path) == ("memory://", False)
    assert backend_url("sqlite:///x.db", tmp_path) == ("sqlite:///x.db", False)


def test_reports_never_show_a_password() -> None:
    assert redact("redis://user:s3cret@127.0.0.1:6379/0") == "redis://user:***@127.0.0.1:6379/0"
    assert redact("redis://:s3cret@127.0.0.1:6379/0") == "redis://:***@127.0.0.1:6379/0"
    assert redact("sqlite:///hexq.db") == "sqlite:///hexq.db"


def test_percentiles_interpolate_between_ranks() -> None:
    figures = percentiles([0.001 * i for i in range(1, 101)])  # 1..100 ms
    assert figures["p50"] == pytest.approx(50.5) and figures["p99"] == pytest.approx(99.01)
    assert figures["max"] == pytest.approx(100.0) and figures["mean"] == pytest.approx(50.5)
    assert percentiles([])["p50"] is None


# -- with worker and server processes -----------------------------------------------------------
@pytest.mark.slow
def test_sqlite_runs_every_phase_with_processes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/bench.db"
    report = bench(capsys, "--backend", url, "--profile", str(tmp_path / "prof"))
    check_report(report, {"client", "http", "bulk", "drain", "latency"})
    assert report["temporary_backend"] is False and report["drain"]["mode"] == "processes"
    assert [p["name"] for p in report["drain"]["processes"]] == ["drain-worker-0", "drain-worker-1"]
    assert all(isinstance(p["pid"], int) for p in report["drain"]["processes"])
    assert {p.name for p in (tmp_path / "prof").iterdir()} >= {"drain-worker-0.prof", "http-server.prof"}
    # A named backend is left without queued bench tasks: the 600 the enqueue phases queued were run at the end.
    code = main(["stats", "--backend", url, "--json"])
    stats = json.loads(capsys.readouterr().out)
    assert code == 0 and stats["backlog"] == 0
    assert stats["by_status"]["succeeded"] == 200 * 4 + 100  # client, HTTP x2, bulk (the drain's), latency
    assert any("cleanup: ran the 600" in note for note in report["notes"])


@pytest.mark.slow
def test_memory_http_phases_use_a_server_process(capsys: pytest.CaptureFixture[str]) -> None:
    report = bench(capsys, "--backend", "memory://", "--skip", "client,bulk,drain,latency")
    check_report(report, {"http"})
    assert report["enqueue"]["http_concurrent"]["connections"] == 4


@pytest.mark.slow
def test_cold_start_measures_each_lambda_module_without_boto3_on_sqlite() -> None:
    from hexq.functions.bench import coldstart

    figures = coldstart._measure("hexq.functions.lambda_api", coldstart.BACKENDS["sqlite"], runs=1)
    assert figures["imports_boto3"] is False and figures["ms"] > 0
    assert coldstart.package_size() > 1_000_000  # starlette, mangum, redis and hexq itself at the least
    text = coldstart.render({"runs": 1, "package_bytes": 5e6, "imports": {
        "sqlite": {m: {"ms": 1.0, "imports_boto3": False, "imports_redis": False} for m in coldstart.MODULES}}})
    assert "lambda_api" in text and "5.0 MB" in text

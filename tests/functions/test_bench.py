"""`hexq bench`, run in-process through `main([...])` with tiny numbers: the report's shape, never its timings."""

from __future__ import annotations

import json
import os
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from hexq.core.errors import ConfigurationError
from hexq.core.model import Task
from hexq.functions.bench.drain import _all_running
from hexq.functions.bench.figures import percentiles, redact
from hexq.functions.bench.options import BenchOptions, DrainSpec
from hexq.functions.bench.procs import cpu_wait_seconds, is_process
from hexq.functions.bench.redisstats import RedisStats, Snapshot, script_commands, usage
from hexq.functions.bench.runner import ENQUEUE_PHASES, backend_url
from hexq.functions.bench.summary import attach_ratios, redis_cpu
from hexq.functions.cli import main

TINY = ["--count", "200", "--rate", "100", "--duration", "1", "--concurrency", "50", "--connections", "4",
        "--timeout", "60"]
THROUGHPUT = {"tasks": int, "seconds": float, "per_second": float, "complete": bool}
REDIS = {"commands_us_per_task": float, "calls_per_task": float, "server_cpu_us_per_task": float,
         "server_cpu_seconds": float, "bench_polls": int, "commands": dict}
PERCENTILES = ("p50", "p95", "p99", "max", "mean")


def bench(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    code = main(["bench", *TINY, "--json", *argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    report: dict[str, Any] = json.loads(out)
    return report


def check_report(report: dict[str, Any], ran: set[str], *, baselines: bool, redis: bool = False) -> None:
    assert report["complete"] is True
    assert isinstance(report["backend"], str) and isinstance(report["backend_kind"], str)
    assert isinstance(report["temporary_backend"], bool) and isinstance(report["notes"], list)
    assert isinstance(report["seconds"], float) and isinstance(report["started_at"], str)
    machine = report["machine"]
    assert isinstance(machine["cpu_model"], str) and machine["cores"] >= 1 and isinstance(machine["python"], str)
    assert isinstance(machine["load_average"], float) and isinstance(machine["load_average_after"], float)
    assert report["config"]["count"] == 200 and sorted(report["config"]["skipped"]) == report["config"]["skipped"]
    assert set(report["enqueue"]) == set(ENQUEUE_PHASES)
    for name, figures in report["enqueue"].items():
        if name.removesuffix("_concurrent") not in ran:
            assert figures is None, name
            continue
        _check_throughput(figures, redis)
        if name.startswith("http"):
            _check_types(figures, {"server_cpu_us_per_task": float, "client_cpu_us_per_task": float,
                                   "server_loop": str, "server_http": str})
    _check_baselines(report, ran, baselines, redis)
    _check_drains(report["drain"], "drain" in ran, redis)
    _check_latency(report["latency"], "latency" in ran, redis)
    _check_latency(report["serve_latency"], "serve" in ran, redis)
    assert (report["redis_cpu"] is not None) is redis


def _check_throughput(figures: dict[str, Any], redis: bool) -> None:
    _check_types(figures, THROUGHPUT)
    assert figures["tasks"] == 200 and figures["complete"] is True
    if redis:
        _check_types(figures["redis"], REDIS)
    else:
        assert figures["redis"] is None


def _check_baselines(report: dict[str, Any], ran: set[str], expected: bool, redis: bool) -> None:
    """Each hexq figure names its baseline's tasks/s and the ratio of the two, computed from those figures."""
    base = report["baselines"]
    if not expected:
        assert base is None
        for figures in [*report["enqueue"].values(), *(report["drain"] or [])]:
            assert figures is None or figures["ratio"] is None
        return
    assert set(base) == {*ENQUEUE_PHASES, "drain"}
    for name in [*ENQUEUE_PHASES, "drain"]:
        figures = base[name]
        if name.removesuffix("_concurrent") not in ran:
            assert figures is None, name
            continue
        _check_throughput(figures, redis)
        assert isinstance(figures["what"], str) and figures["what"]
    pairs = [(figures, base[name]) for name, figures in report["enqueue"].items() if figures is not None]
    pairs += [(row, base["drain"]) for row in report["drain"] or []]
    for figures, baseline in pairs:
        assert figures["baseline_per_second"] == baseline["per_second"]
        assert figures["ratio"] == round(figures["per_second"] / baseline["per_second"], 3)


def _check_drains(drains: list[dict[str, Any]] | None, ran: bool, redis: bool) -> None:
    if not ran:
        assert drains is None
        return
    assert drains
    for drain in drains:
        assert drain["drained"] == drain["tasks"] == 200 and drain["complete"] is True
        _check_types(drain, {"seconds": float, "per_second": float, "wall_seconds": float, "wall_per_second": float,
                             "startup_seconds": float, "cpu_seconds": float, "cpu_us_per_task": float,
                             "peak_rss_mb": float, "workers": int, "concurrency": int, "mode": str, "timing": str})
        assert len(drain["processes"]) == (drain["workers"] if drain["mode"] == "processes" else 1)
        for process in [*drain["processes"], drain["bench_process"], *([drain["redis_server"]] if redis else [])]:
            _check_types(process, {"cpu_seconds": float})
            assert "cpu_us_per_task" in process and "cores" in process
            assert process["cpu_wait_seconds"] is None or process["cpu_wait_seconds"] >= 0
        for process in drain["processes"]:
            _check_types(process, {"name": str, "cpu_seconds_with_startup": float, "peak_rss_mb": float})
            assert process["pid"] is None or isinstance(process["pid"], int)
            assert process["peak_rss_mb"] > 0
        if drain["all_running"] is not None:
            assert 0 < drain["all_running"]["tasks"] <= drain["drained"]
        assert ("redis_server" in drain) is redis
        if redis:
            _check_types(drain["redis"], REDIS)
            assert drain["redis_server"]["cpu_seconds"] == drain["redis"]["server_cpu_seconds"]


def _check_latency(latency: dict[str, Any] | None, ran: bool, redis: bool) -> None:
    if not ran:
        assert latency is None
        return
    assert latency is not None
    assert latency["tasks"] == latency["submitted"] == latency["completed"] == 100 and latency["complete"] is True
    _check_types(latency, {"rate": float, "duration": float, "achieved_rate": float, "mode": str})
    assert latency["mode"] in ("in-process", "processes", "hexq serve")
    for key in ("submit_ms", "submit_to_start_ms", "submit_to_finish_ms"):
        assert set(latency[key]) == set(PERCENTILES)
        values = [latency[key][p] for p in PERCENTILES]
        assert all(isinstance(v, float) and v >= 0 for v in values), (key, values)
        assert latency[key]["p50"] <= latency[key]["p99"] <= latency[key]["max"]
    assert (latency["redis"] is not None) is redis


def _check_types(figures: dict[str, Any], types: dict[str, type]) -> None:
    for key, kind in types.items():
        value = figures[key]
        ok = isinstance(value, int | float) and not isinstance(value, bool) if kind is float else (
            isinstance(value, kind))
        assert ok, (key, value)


# -- in this process only -----------------------------------------------------------------------
def test_memory_runs_every_phase_but_http_in_process_without_baselines(capsys: pytest.CaptureFixture[str]) -> None:
    report = bench(capsys, "--backend", "memory://", "--skip", "http", "--workers", "1,2,1x1")  # serve: never here
    check_report(report, {"client", "bulk", "drain", "latency"}, baselines=False)
    assert report["backend"] == "memory://" and report["latency"]["mode"] == "in-process"
    assert [(d["workers"], d["concurrency"], d["mode"]) for d in report["drain"]] == [
        (1, 50, "in-process"), (2, 50, "in-process"), (1, 1, "in-process")]
    assert report["drain"][0]["processes"][0]["pid"] is None
    assert report["config"]["drains"] == [[1, 50], [2, 50], [1, 1]] and report["config"]["coroutines"] == 64
    assert any("memory:// lives in one process" in note for note in report["notes"])
    assert any("memory:// has no baselines" in note for note in report["notes"])
    assert any("serve phase does not run on memory://" in note for note in report["notes"])


def test_sqlite_enqueue_phases_run_after_their_baselines(capsys: pytest.CaptureFixture[str]) -> None:
    report = bench(capsys, "--skip", "http,drain,latency,serve")
    check_report(report, {"client", "bulk"}, baselines=True)
    assert report["backend_kind"] == "sqlite" and report["temporary_backend"] is True
    assert report["enqueue"]["client_concurrent"]["coroutines"] == 64
    assert "INSERT" in report["baselines"]["client"]["what"]
    assert not Path(report["backend"].removeprefix("sqlite:///")).exists()  # removed with its directory


def test_skipping_the_baselines_leaves_no_ratios(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    report = bench(capsys, "--backend", f"sqlite:///{tmp_path}/b.db", "--skip", "http,drain,latency,serve,baselines")
    check_report(report, {"client", "bulk"}, baselines=False)


def test_the_baselines_leave_no_table_behind(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    bench(capsys, "--backend", f"sqlite:///{path}", "--skip", "http,drain,latency,serve")
    assert bench_tables(path) == []


def bench_tables(path: Path) -> list[str]:
    with closing(sqlite3.connect(path)) as conn:
        names = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return [name for name in names if name.startswith("bench_")]


def test_the_table_names_every_phase(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", *TINY, "--skip", "http,serve", "--backend", "memory://", "--workers", "1,2x3"])
    out = capsys.readouterr().out
    assert code == 0
    for words in ("enqueue: client, 1 by 1", "enqueue: client, 64 coroutines", "enqueue: bulk",
                  "drain: 1 in-process worker x 50", "drain: 2 in-process workers x 3", "submit -> start", "p99",
                  "load", "memory:// has no baselines"):
        assert words in out, words


def test_the_table_puts_each_baseline_above_its_phase(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", *TINY, "--skip", "http,drain,latency,serve"])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    rows = [line for line in lines if line.startswith("│") and ("baseline " in line or "enqueue:" in line)]
    assert len(rows) == 6 and all("baseline" in row for row in rows[::2])
    assert "one INSERT per call" in rows[0] and "enqueue: client, 1 by 1" in rows[1] and "×" in rows[1]


@pytest.mark.parametrize("argv", [["--count", "0"], ["-n", "0"], ["--skip", "drain,nope"], ["--rate", "0"],
                                  ["--workers", "0"], ["--workers", "1,0"], ["--workers", "two"],
                                  ["--workers", "1x0"], ["--workers", "1x"]])
def test_bad_options_are_usage_errors(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    assert main(["bench", "--backend", "memory://", *argv]) == 2
    assert capsys.readouterr().err


def test_options_refuse_what_cannot_run() -> None:
    with pytest.raises(ConfigurationError, match="--workers"):
        BenchOptions(workers=(DrainSpec(0),))
    with pytest.raises(ConfigurationError, match="--workers"):
        BenchOptions(workers=())
    assert BenchOptions(workers=(DrainSpec(2), DrainSpec(1, 1)), concurrency=7).drains() == [(2, 7), (1, 1)]
    with pytest.raises(ConfigurationError, match="unknown: nope"):
        BenchOptions(skip=frozenset({"nope"}))
    with pytest.raises(ConfigurationError, match="--chunk"):
        BenchOptions(chunk=2000)
    assert BenchOptions(skip=frozenset({"baselines"})).baselines is False


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


def test_a_process_is_told_apart_by_its_name_and_its_wait_for_a_core_is_read() -> None:
    me = os.getpid()
    assert is_process(me, Path("/proc/self/comm").read_text().strip()) and not is_process(me, "redis-server")
    wait = cpu_wait_seconds(me)
    assert wait is None or wait >= 0  # None where the kernel keeps no schedstats
    assert cpu_wait_seconds(2**22 + 7) is None  # above pid_max: no such process


# -- the derived figures, from made-up ones ------------------------------------------------------
def test_ratios_divide_each_figure_by_its_baseline() -> None:
    enqueue: dict[str, Any] = {"client": {"per_second": 800.0}, "bulk": {"per_second": 30.0}, "http": None,
                               "client_concurrent": {"per_second": 50.0}}
    drains = [{"workers": 1, "per_second": 150.0}, {"workers": 2, "per_second": 300.0}]
    baselines: dict[str, Any] = {"client": {"per_second": 1000.0}, "bulk": {"per_second": 0.0}, "http": None,
                                 "client_concurrent": None, "drain": {"per_second": 200.0}}
    attach_ratios(enqueue, drains, baselines)
    assert (enqueue["client"]["ratio"], enqueue["client"]["baseline_per_second"]) == (0.8, 1000.0)
    assert enqueue["bulk"]["ratio"] is None  # no tasks/s to divide by
    assert enqueue["client_concurrent"]["ratio"] is None and enqueue["client_concurrent"]["baseline_per_second"] is None
    assert [d["ratio"] for d in drains] == [0.75, 1.5]
    attach_ratios(enqueue, drains, None)
    assert enqueue["client"]["ratio"] is None and drains[0]["ratio"] is None


def test_redis_cpu_adds_enqueue_to_claim_and_settle() -> None:
    def cpu(us: float) -> dict[str, Any]:
        return {"redis": {"commands_us_per_task": us, "server_cpu_us_per_task": us * 2, "calls_per_task": 1.0}}

    enqueue: dict[str, Any] = {"client": cpu(50.0), "bulk": cpu(20.0)}
    drains = [{"workers": 2, "concurrency": 200, **cpu(15.0)}, {"workers": 1, "concurrency": 1, **cpu(40.0)}]
    rows = redis_cpu(enqueue, drains, cpu(70.0), {"client": cpu(3.0), "drain": cpu(4.0)})
    assert rows is not None
    by_name = {row["operation"]: row for row in rows}
    assert by_name["enqueue, 1 by 1"]["baseline"]["commands_us_per_task"] == 3.0
    assert by_name["claim + settle, drain 2 x 200"]["baseline"]["commands_us_per_task"] == 4.0
    batched = by_name["batched: bulk enqueue + drain 2 x 200"]
    assert (batched["commands_us_per_task"], batched["server_cpu_us_per_task"]) == (35.0, 70.0)
    assert by_name["one by one: enqueue 1 by 1 + drain 1 x 1"]["commands_us_per_task"] == 90.0
    assert "batched: bulk enqueue + drain 1 x 1" not in by_name
    assert by_name["at --rate: submit, claim, settle (latency phase)"]["commands_us_per_task"] == 70.0
    assert redis_cpu({}, None, None, None) is None


def test_redis_usage_counts_top_level_commands_only() -> None:
    """A script's inner commands are inside its own usec; the bench's INFO and priced polls are left out."""
    before = Snapshot({"evalsha": (10, 1000), "zadd": (30, 300), "info": (5, 500)}, cpu=1.0, polls=3)
    after = Snapshot({"evalsha": (32, 4000), "zadd": (90, 900), "blpop": (2, 40), "info": (7, 900)}, cpu=1.5,
                     polls=5)
    figures = usage(before, after, tasks=100, poll_price={"evalsha": (1.0, 50.0)})  # 2 polls: 2 calls, 100 µs
    assert "zadd" in script_commands()
    assert figures["commands"]["zadd"] == {"calls": 60, "usec": 600, "counted": False}
    assert figures["commands"]["evalsha"] == {"calls": 20, "usec": 2900, "counted": True}
    assert "info" not in figures["commands"] and figures["bench_polls"] == 2
    assert figures["commands_us_per_task"] == 29.4  # (2900 + 40) / 100
    assert figures["calls_per_task"] == 0.22 and figures["server_cpu_us_per_task"] == 5000.0
    plain = usage(Snapshot({}, 0.0, 0), Snapshot({"lpush": (100, 300)}, 0.001, 0), tasks=100)
    assert plain["commands"]["lpush"]["counted"] is True and plain["commands_us_per_task"] == 3.0


def test_a_cluster_phase_reports_each_masters_cpu_and_the_spread() -> None:
    before = Snapshot({}, cpu=3.0, polls=0, nodes=(("a:1", 1.0), ("b:2", 1.0), ("c:3", 1.0)))
    after = Snapshot({}, cpu=7.5, polls=0, nodes=(("a:1", 3.0), ("b:2", 2.0), ("c:3", 2.5)))
    figures = usage(before, after, tasks=10)
    assert figures["server_cpu_seconds_by_node"] == {"a:1": 2.0, "b:2": 1.0, "c:3": 1.5}
    assert figures["server_cpu_max_over_min"] == 2.0 and figures["server_cpu_seconds"] == 4.5
    one_server = usage(Snapshot({}, 0.0, 0), Snapshot({}, 1.0, 0), tasks=1)
    assert "server_cpu_seconds_by_node" not in one_server and "server_cpu_max_over_min" not in one_server


@pytest.mark.redis
async def test_a_cluster_snapshot_reads_and_sums_every_master(redis_cluster_url: str) -> None:
    import redis_server

    client = redis_server.sync_client(redis_cluster_url)
    stats = RedisStats(redis_cluster_url)
    try:
        before = await stats.snapshot(0)
        for tag in ("a", "b", "c"):  # slots 15495, 3300 and 7365: one on each master of a fresh cluster
            client.set(f"hexq-bench-test:{{{tag}}}", "1")
        after = await stats.snapshot(0)
    finally:
        await stats.close()
        client.close()
    assert len(after.nodes) == 3 and {node for node, _ in after.nodes} == {node for node, _ in before.nodes}
    assert after.cpu == pytest.approx(sum(cpu for _, cpu in after.nodes))
    assert after.commands["set"][0] - before.commands.get("set", (0.0, 0.0))[0] == 3


def test_all_running_starts_when_the_last_worker_took_its_first_task() -> None:
    def task(worker: str, started: float) -> Task:
        return Task(id=f"{worker}{started}", type="noop", payload={}, worker_id=worker, started_at=started,
                    finished_at=started + 0.5)

    tasks = [task("a", 0.0), task("a", 1.0), task("b", 2.0), task("a", 3.0), task("b", 3.5)]
    assert _all_running(tasks, 2) == {"tasks": 3, "seconds": 2.0, "per_second": 1.5}  # from 2.0 to 4.0
    assert _all_running(tasks, 3) is None  # a third worker never took a task


# -- with worker and server processes -----------------------------------------------------------
@pytest.mark.slow
def test_sqlite_runs_every_phase_with_processes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/bench.db"
    report = bench(capsys, "--backend", url, "--profile", str(tmp_path / "prof"), "--workers", "1,2")
    check_report(report, {"client", "http", "bulk", "drain", "latency", "serve"}, baselines=True)
    assert report["temporary_backend"] is False and [d["mode"] for d in report["drain"]] == ["processes"] * 2
    assert [[p["name"] for p in d["processes"]] for d in report["drain"]] == [
        ["drain-worker-0"], ["drain1-worker-0", "drain1-worker-1"]]
    assert all(isinstance(p["pid"], int) for d in report["drain"] for p in d["processes"])
    assert {p.name for p in (tmp_path / "prof").iterdir()} >= {"drain-worker-0.prof", "http-server.prof",
                                                               "plain-http-server.prof", "serve.prof"}
    assert report["enqueue"]["http"]["server_http"] == report["baselines"]["http"]["server_http"]
    # A named backend is left without queued bench tasks: the 800 the enqueue phases queued were run at the end.
    code = main(["stats", "--backend", url, "--json"])
    stats = json.loads(capsys.readouterr().out)
    assert code == 0 and stats["backlog"] == 0
    # client x2, HTTP x2; two drains; latency; serve, plus its warm-up task
    assert stats["by_status"]["succeeded"] == 200 * 4 + 200 * 2 + 100 + 101
    assert any("cleanup: ran the 800" in note for note in report["notes"])
    assert bench_tables(tmp_path / "bench.db") == []  # the HTTP baseline's server wrote there too


@pytest.mark.slow
@pytest.mark.redis
def test_redis_reports_what_the_server_spent(capsys: pytest.CaptureFixture[str], redis_url: str) -> None:
    report = bench(capsys, "--backend", redis_url, "--skip", "http", "--workers", "1,1x1")
    check_report(report, {"client", "bulk", "drain", "latency", "serve"}, baselines=True, redis=True)
    assert report["serve_latency"]["mode"] == "hexq serve"
    assert isinstance(report["machine"]["redis_version"], str)
    assert "LPUSH" in report["baselines"]["client"]["what"] and "BRPOP" in report["baselines"]["drain"]["what"]
    assert report["baselines"]["client"]["redis"]["commands"]["lpush"]["counted"] is True
    assert report["enqueue"]["client"]["redis"]["calls_per_task"] >= 1
    operations = [row["operation"] for row in report["redis_cpu"]]
    assert "batched: bulk enqueue + drain 1 x 50" in operations
    assert "one by one: enqueue 1 by 1 + drain 1 x 1" in operations
    assert "at --rate: submit, claim, settle (latency phase)" in operations
    assert "at --rate under hexq serve (serve phase)" in operations


@pytest.mark.slow
def test_memory_http_phases_use_a_server_process(capsys: pytest.CaptureFixture[str]) -> None:
    report = bench(capsys, "--backend", "memory://", "--skip", "client,bulk,drain,latency,serve")
    check_report(report, {"http"}, baselines=False)
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

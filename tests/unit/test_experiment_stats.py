"""The experiments' pure parts: statistics, the retry expectation, the failure draw, and the output files."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from hexq.core.errors import ConfigurationError
from hexq.functions.experiment import output, plots, stats
from hexq.functions.experiment.options import Options
from hexq.functions.experiment.result import Result
from hexq.functions.experiment.retries import envelope
from hexq.functions.experiment.tasks import FLAKY_RETRY, draw


def test_summary_gives_percentiles_in_milliseconds() -> None:
    values = [i / 1000 for i in range(1, 101)]  # 1..100 ms
    s = stats.summary(values)
    assert s["n"] == 100 and s["max"] == 100.0
    assert s["p50"] == pytest.approx(50.5) and s["p99"] == pytest.approx(99.01)
    assert stats.summary([])["p50"] is None


def test_usl_fit_recovers_the_coefficients_it_was_made_with() -> None:
    lam, sigma, kappa = 10.0, 0.05, 0.002
    ns = [1, 2, 5, 10, 20]
    xs = [lam * n / (1 + sigma * (n - 1) + kappa * n * (n - 1)) for n in ns]
    fit = stats.usl(ns, xs)
    assert fit is not None
    assert fit["sigma"] == pytest.approx(sigma, abs=1e-4) and fit["kappa"] == pytest.approx(kappa, abs=1e-5)
    assert stats.usl_throughput(fit, 5) == pytest.approx(xs[2], rel=1e-3)


def test_usl_fit_of_linear_scaling_is_zero_and_needs_three_points() -> None:
    fit = stats.usl([1, 2, 4], [10.0, 20.0, 40.0])
    assert fit is not None and fit["sigma"] == 0 and fit["kappa"] == 0 and fit["peak_workers"] is None
    assert stats.usl([1, 2], [10.0, 19.0]) is None


def test_usl_fit_never_returns_a_negative_coefficient() -> None:
    fit = stats.usl([1, 2, 4, 8], [10.0, 21.0, 44.0, 70.0])  # superlinear at first: an unconstrained σ < 0
    assert fit is not None and fit["sigma"] is not None and fit["kappa"] is not None
    assert fit["sigma"] >= 0 and fit["kappa"] >= 0


def test_expected_attempts_are_a_truncated_geometric() -> None:
    expected = stats.attempts_expected(0.5, 5)
    assert sum(expected.values()) == pytest.approx(1.0)
    assert expected[1] == 0.5 and expected[4] == 0.0625 and expected[5] == 0.0625
    assert stats.total_variation({1: 50, 2: 25, 3: 12, 4: 7, 5: 6}, expected) < 0.02
    assert stats.total_variation({5: 10}, expected) == pytest.approx(0.9375)


def test_the_failure_draw_is_fixed_by_its_inputs_and_uniform() -> None:
    assert draw(1, 2, 3) == draw(1, 2, 3) != draw(1, 2, 4)
    values = [draw(7, i, 1) for i in range(4000)]
    assert 0 <= min(values) and max(values) < 1
    assert sum(v < 0.3 for v in values) / len(values) == pytest.approx(0.3, abs=0.03)


def test_the_backoff_envelope_is_the_policy_s() -> None:
    for n in range(1, 6):
        low, high = envelope(FLAKY_RETRY, n)
        delays = [FLAKY_RETRY.delay(n, random.random) for _ in range(200)]
        assert all(low <= d <= high for d in delays)


def test_bootstrap_interval_holds_the_estimate() -> None:
    rng = random.Random(3)
    values = [rng.expovariate(10) for _ in range(300)]
    ci = stats.bootstrap_ci(values, 0.95, rng)
    assert ci is not None and ci[0] <= stats.summary(values)["p95"] <= ci[1]  # type: ignore[operator]
    assert stats.bootstrap_ci(values[:5], 0.95, rng) is None


@pytest.mark.parametrize("fields", [{"name": "nope"}, {"name": "priority", "repeat": 0},
                                    {"name": "priority", "timeout": 0}])
def test_bad_options_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        Options(**fields)  # type: ignore[arg-type]


def _config() -> dict[str, object]:
    return {"started_at": "2026-01-01T00:00:00+00:00", "backend_kind": "sqlite", "backend": "sqlite:///x.db",
            "temporary_backend": False, "version": "0", "quick": True, "seed": 1, "command": "hexq experiment x",
            "sizes": {"tasks": 3}, "load_average_after": 0.5,
            "machine": {"cpu_model": "cpu", "cores": 2, "python": "3.11", "load_average": 0.4}}


def test_a_report_without_matplotlib_says_how_to_get_the_plots(tmp_path: Path) -> None:
    result = Result([{"id": "a"}], {"x": 1}, {"p50_ms": 1.5})
    wanted = [plots.Figure("a.png", "a figure", lambda axes: None)]
    output.write_report(tmp_path, "x", "title", "about", _config(), [result], [], wanted, ["a finding"])
    report = (tmp_path / "report.md").read_text()
    assert plots.INSTALL in report and "a finding" in report and "| 1 | 1.5 |" in report


def test_finished_runs_are_listed_newest_first_and_half_written_ones_left_out(tmp_path: Path) -> None:
    for name, stamp in (("priority", "20260101T000000Z"), ("scaling", "20260102T000000Z")):
        directory = tmp_path / name / stamp
        directory.mkdir(parents=True)
        output.write_json(directory / "config.json", {**_config(), "started_at": stamp})
        output.write_json(directory / "summary.json", output.summary_document(name, [Result([], {}, {"a": 1.0})]))
        (directory / "report.md").write_text("# r")
        (directory / "plot.png").write_bytes(b"")
    (tmp_path / "load" / "20260103T000000Z").mkdir(parents=True)  # still running: no summary yet
    runs = output.list_finished(tmp_path)
    assert [r["name"] for r in runs] == ["scaling", "priority"]
    assert runs[0]["headline"] == {"a": 1.0} and runs[0]["figures"][0].endswith("plot.png")
    assert json.loads(Path(runs[0]["directory"], "summary.json").read_text())["complete"] is True
    index = output.write_index(tmp_path).read_text()
    assert index.index("[scaling](scaling/20260102T000000Z/report.md)") < index.index("[priority](")
    assert "[load]" not in index


def _level(fraction: float, p99: float, offered: float, achieved: float) -> dict[str, object]:
    return {"fraction": fraction, "to_finish_ms": {"p99": p99}, "offered_per_s": offered, "achieved_per_s": achieved}


def test_the_knee_is_where_latency_or_throughput_gives_way_for_good() -> None:
    from hexq.functions.experiment.load import _knee

    levels = [_level(0.1, 70, 7, 7), _level(0.5, 350, 35, 35), _level(0.75, 140, 55, 55),  # a lone spike at 50 %
              _level(1.0, 450, 72, 71), _level(1.5, 7000, 110, 73)]
    knee = _knee(levels)
    assert knee is not None and knee["fraction"] == 1.0 and "p99 450" in knee["why"]
    throughput_only = [_level(0.1, 70, 7, 7), _level(1.2, 100, 90, 75), _level(1.5, 120, 110, 75)]
    assert _knee(throughput_only) == {"fraction": 1.2, "why": "achieved 75/s < 95 % of the 90/s offered"}
    assert _knee([_level(0.1, 70, 7, 7), _level(0.5, 80, 35, 35)]) is None


def test_repeats_report_the_spread_of_each_headline_figure(tmp_path: Path) -> None:
    results = [Result([], {}, {"p95_ms": v, "other": None}) for v in (3.0, 1.0, 2.0)]
    document = output.summary_document("x", results)
    assert document["spread"]["p95_ms"] == {"min": 1.0, "median": 2.0, "max": 3.0}
    assert document["spread"]["other"] is None and len(document["repeats"]) == 3
    output.write_report(tmp_path, "x", "title", "about", _config(), results, [], [], [])
    report = (tmp_path / "report.md").read_text()
    assert "| median | 2 | – |" in report and "| 3 | 2 | – |" in report
    assert output.summary_document("x", results[:1])["spread"] is None

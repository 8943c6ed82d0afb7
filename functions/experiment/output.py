"""The files of a finished run under DIR/NAME/<timestamp>/, and the listing of finished runs.

config.json: every input (sizes, seed, backend, hexq version, git commit, machine, load average before and
after); tasks.csv: one row per task with its stored timestamps; summary.json: every derived figure per
repeat and the spread of the headline figures; *.png; report.md linking them.
"""

from __future__ import annotations

import csv
import json
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hexq.functions.experiment.plots import INSTALL, Figure
from hexq.functions.experiment.result import Result
from hexq.functions.experiment.stats import spread


def run_directory(out: Path, name: str, started: datetime) -> Path:
    directory = out / name / started.strftime("%Y%m%dT%H%M%SZ")
    suffix = 1
    while directory.exists():  # two runs in one second (tests): keep both
        directory = out / name / f"{started.strftime('%Y%m%dT%H%M%SZ')}-{suffix}"
        suffix += 1
    directory.mkdir(parents=True)
    return directory


def git_commit() -> str | None:
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    columns: dict[str, None] = {}
    for r in rows:
        columns.update(dict.fromkeys(r))
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, default=str) + "\n")


def summary_document(name: str, results: Sequence[Result]) -> dict[str, Any]:
    keys = list(dict.fromkeys(k for r in results for k in r.headline))
    return {"experiment": name, "complete": all(r.complete for r in results),
            "headline": [r.headline for r in results],
            "spread": {k: spread([r.headline.get(k) for r in results]) for k in keys} if len(results) > 1 else None,
            "repeats": [r.summary for r in results], "notes": [n for r in results for n in r.notes]}


def write_report(directory: Path, name: str, title: str, about: str, config: dict[str, Any],
                 results: Sequence[Result], drawn: Sequence[Figure], wanted: Sequence[Figure],
                 findings: Sequence[str]) -> None:
    host = config["machine"]
    lines = [f"# Experiment `{name}`: {title}", "",
             f"Run {config['started_at']} on {_backend(config)}, hexq "
             f"{config['version']}{' at ' + config['commit'] if config.get('commit') else ''}, "
             f"{'--quick' if config['quick'] else 'full size'}, seed {config['seed']}, "
             f"{len(results)} repeat(s). Machine: {host['cpu_model']}, {host['cores']} cores, Python {host['python']}; "
             f"1-minute load average {host['load_average']} before, {config.get('load_average_after')} after "
             "(anything above the core count means other work shared the CPUs).", "",
             f"Command: `{config['command']}`", "", "## What was done", "", about, "",
             "Sizes: " + ", ".join(f"{k} = {v}" for k, v in config["sizes"].items()) + ".", "",
             "## Results", ""]
    lines += [f"{finding}\n" for finding in findings]
    if wanted and not drawn:
        lines += [f"No figures: matplotlib is not installed (`{INSTALL}`); tasks.csv and summary.json hold the "
                  "data.", ""]
    for figure in drawn:
        lines += [f"![{figure.caption}]({figure.file})", "", f"*{figure.caption}*", ""]
    lines += ["## Headline figures", "", _table(results), ""]
    notes = [n for r in results for n in r.notes]
    if notes:
        lines += ["## Notes", "", *(f"- {n}" for n in notes), ""]
    lines += ["## Files", "", "- [config.json](config.json): every input, the machine and its load",
              "- [tasks.csv](tasks.csv): one row per task, with the backend's timestamps (epoch seconds)",
              "- [summary.json](summary.json): every derived figure, per repeat", ""]
    (directory / "report.md").write_text("\n".join(lines))


def _backend(config: dict[str, Any]) -> str:
    if config.get("temporary_backend"):
        return "a temporary SQLite file"
    return f"{config['backend_kind']} (`{config['backend']}`)"


def _table(results: Sequence[Result]) -> str:
    keys = list(dict.fromkeys(k for r in results for k in r.headline))
    rows = ["| repeat | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for i, r in enumerate(results):
        rows.append(f"| {i + 1} | " + " | ".join(_cell(r.headline.get(k)) for k in keys) + " |")
    if len(results) > 1:
        for label in ("min", "median", "max"):
            cells = [spread([r.headline.get(k) for r in results]) for k in keys]
            rows.append(f"| {label} | " + " | ".join(_cell(c[label] if c else None) for c in cells) + " |")
    return "\n".join(rows)


def _cell(value: float | None) -> str:
    return "–" if value is None else f"{value:g}"


def list_finished(out: Path) -> list[dict[str, Any]]:
    """The finished runs under `out` (DIR/NAME/<timestamp>/ holding summary.json), newest first: what a
    dashboard lists. Each: name, timestamp, directory, report (path to report.md), figures (PNG paths),
    backend, quick, complete, headline (the first repeat's)."""
    runs = []
    for summary_path in out.glob("*/*/summary.json"):
        directory = summary_path.parent
        try:
            summary = json.loads(summary_path.read_text())
            config = json.loads((directory / "config.json").read_text())
        except (OSError, ValueError):
            continue  # a run still being written, or damaged: not finished
        runs.append({"name": directory.parent.name, "timestamp": directory.name, "directory": str(directory),
                     "started_at": config.get("started_at"),
                     "report": str(directory / "report.md") if (directory / "report.md").exists() else None,
                     "figures": sorted(str(p) for p in directory.glob("*.png")),
                     "backend": config.get("backend_kind"), "quick": config.get("quick"),
                     "complete": summary.get("complete"),
                     "headline": (summary.get("headline") or [{}])[0]})
    return sorted(runs, key=lambda r: (r["started_at"] or "", r["timestamp"]), reverse=True)


def write_index(out: Path) -> Path:
    """DIR/index.md: every finished run under DIR, newest first, with its headline figures and a link to its
    report; rewritten after each `hexq experiment` so it always lists what is there."""
    lines = ["# Experiment runs", "", "Written by `hexq experiment`; newest first. Each run's report.md says what "
             "was done, on which machine and under what load.", "",
             "| experiment | started | backend | size | complete | headline |", "|---|---|---|---|---|---|"]
    for run in list_finished(out):
        link = Path(run["directory"]).relative_to(out) / "report.md"
        headline = ", ".join(f"{k} {v:g}" if isinstance(v, int | float) else f"{k} –"
                             for k, v in run["headline"].items())
        lines.append(f"| [{run['name']}]({link.as_posix()}) | {run['started_at']} | {run['backend']} | "
                     f"{'quick' if run['quick'] else 'full'} | {'yes' if run['complete'] else 'no'} | {headline} |")
    path = out / "index.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def now() -> datetime:
    return datetime.now(UTC)

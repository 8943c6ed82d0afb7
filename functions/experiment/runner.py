"""`hexq experiment`: run one experiment (or all) against a backend and write its results.

Each experiment runs --repeat times (seeds --seed, --seed + 1, ...) against one backend (a temporary SQLite
file unless --backend names one), each repeat on queues of its own; the results are then written under
--out/NAME/<timestamp>/ (output.py) and a table of the headline figures is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

from rich.console import Console
from rich.table import Table

from hexq import __version__
from hexq.core.errors import ConfigurationError
from hexq.functions.bench.context import Meter
from hexq.functions.bench.figures import load_average, machine, redact
from hexq.functions.bench.runner import _quiet, backend_url
from hexq.functions.bootstrap import bootstrap
from hexq.functions.experiment import output, plots
from hexq.functions.experiment.lab import TASK_MODULES, Lab
from hexq.functions.experiment.options import NAMES, Options, from_args
from hexq.functions.experiment.result import Experiment, Result
from hexq.functions.settings import Settings


def experiment(name: str) -> Experiment:
    return cast(Experiment, importlib.import_module(f"hexq.functions.experiment.{name}"))


def run_command(settings: Settings, args: argparse.Namespace) -> int:
    """The CLI entry: exit 0 when every experiment finished, 1 when one stopped at its timeout."""
    options = from_args(args)
    if options.name == "list":
        for name in NAMES:
            print(f"{name:<10} {experiment(name).TITLE}")
        return 0
    tty = sys.stdout.isatty()
    console = Console(width=None if tty else 150)
    progress = (Console(stderr=True) if options.json else console) if tty else None
    complete, documents = True, []
    for name in options.names():
        directory, results = asyncio.run(run_experiment(options, name, settings, progress))
        complete &= all(r.complete for r in results)
        documents.append({"directory": str(directory), **output.summary_document(name, results)})
        if not options.json:
            _table(console, name, directory, results)
    output.write_index(options.out)
    if options.json:
        print(json.dumps(documents if options.name == "all" else documents[0], indent=2, default=str))
    elif not plots.available():
        console.print(f"No plots: matplotlib is not installed. For the PNGs: {plots.INSTALL}")
    return 0 if complete else 1


async def run_experiment(options: Options, name: str, settings: Settings | None = None,
                         console: Console | None = None) -> tuple[Path, list[Result]]:
    """Run experiment `name` --repeat times and write its directory; the directory and the results."""
    module = experiment(name)
    settings = settings or Settings()
    started, host, clock = output.now(), machine(), time.monotonic()
    with _quiet("httpx", "httpcore", "hexq.worker"), tempfile.TemporaryDirectory(prefix="hexq-experiment-") as tmp:
        url, temporary = backend_url(options.backend, Path(tmp))
        if urlsplit(url).scheme == "memory":
            raise ConfigurationError("experiment: memory:// lives inside one process and the experiments run "
                                     "worker processes; use sqlite:///file.db, redis://... or aws://...")
        modules = tuple(dict.fromkeys((*settings.task_modules, *TASK_MODULES.split(","))))
        container = bootstrap(settings.override(backend_url=url, task_modules=modules))
        results: list[Result] = []
        try:
            with Meter(console) as meter:
                for repeat in range(options.repeat):
                    lab = Lab(options, container, url, Path(tmp), meter)
                    results.append(await module.run(lab, options.seed + repeat))
        finally:
            await container.backend.close()
    config = {"experiment": name, "title": module.TITLE, "started_at": started.isoformat(timespec="seconds"),
              "seconds": round(time.monotonic() - clock, 1), "quick": options.quick, "seed": options.seed,
              "repeat": options.repeat, "seeds": [options.seed + i for i in range(options.repeat)],
              "timeout": options.timeout, "sizes": module.sizes(options.quick), "backend": redact(url),
              "backend_kind": urlsplit(url).scheme, "temporary_backend": temporary, "version": __version__,
              "commit": output.git_commit(), "machine": host, "load_average_after": load_average(),
              "command": _command(options, name, temporary)}
    directory = output.run_directory(options.out, name, started)
    wanted = module.figures(results)
    drawn = plots.render(wanted, directory)
    output.write_json(directory / "config.json", config)
    output.write_csv(directory / "tasks.csv", [{"repeat": i + 1, **row} for i, r in enumerate(results)
                                               for row in r.rows])
    for table in dict.fromkeys(t for r in results for t in r.tables):
        output.write_csv(directory / f"{table}.csv", [{"repeat": i + 1, **row} for i, r in enumerate(results)
                                                      for row in r.tables.get(table, [])])
    output.write_json(directory / "summary.json", output.summary_document(name, results))
    output.write_report(directory, name, module.TITLE, module.ABOUT, config, results, drawn, wanted,
                        module.findings(results))
    return directory, results


def _command(options: Options, name: str, temporary: bool) -> str:
    parts = ["hexq", "experiment", name]
    if not temporary and options.backend:
        parts += ["--backend", redact(options.backend)]
    if options.quick:
        parts.append("--quick")
    parts += ["--seed", str(options.seed)]
    if options.repeat > 1:
        parts += ["--repeat", str(options.repeat)]
    return shlex.join(parts)


def _table(console: Console, name: str, directory: Path, results: list[Result]) -> None:
    keys = list(dict.fromkeys(k for r in results for k in r.headline))
    table = Table(title=f"experiment {name}: {directory}", title_justify="left")
    table.add_column("repeat", justify="right")
    for key in keys:
        table.add_column(key, justify="right")
    for i, r in enumerate(results):
        table.add_row(str(i + 1), *(_cell(r.headline.get(k)) for k in keys))
    console.print(table)
    for note in (n for r in results for n in r.notes):
        console.print(f"note: {note}")


def _cell(value: Any) -> str:
    return "–" if value is None else f"{value:g}"

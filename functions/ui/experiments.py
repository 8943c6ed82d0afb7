"""The dashboard's Experiments page reads: the finished `hexq experiment` runs under HEXQ_EXPERIMENTS_DIR.

GET /v1/experiments lists them (functions/experiment/output.list_finished, newest first) with links to their
files; GET /v1/experiments/{name}/{run}/{file} answers one of a run's files, its report.md, summary.json,
config.json, tasks.csv or a PNG. A file is served only when every path part is a plain name and the resolved
path lies inside that directory: no `..`, no symlink out of it, no other extension.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, cast

from starlette.requests import Request
from starlette.responses import FileResponse, Response

from hexq.core.errors import TaskNotFound
from hexq.functions.wire import JSONOut

_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
MEDIA = {".md": "text/plain; charset=utf-8", ".json": "application/json", ".csv": "text/csv; charset=utf-8",
         ".png": "image/png"}


class ExperimentFileNotFound(TaskNotFound):
    """404 not_found, as for a missing task (functions/errors.py looks errors up along the MRO)."""


def runs(directory: Path) -> dict[str, Any]:
    """Every finished run under `directory`, with the API paths of its report and figures (under the API's root)
    instead of local paths."""
    from hexq.functions.experiment.output import list_finished  # not at import: the API's cold start

    found = []
    for run in list_finished(directory):
        base = f"/v1/experiments/{run['name']}/{run['timestamp']}"
        found.append({"name": run["name"], "run": run["timestamp"], "started_at": run["started_at"],
                      "backend": run["backend"], "quick": run["quick"], "complete": run["complete"],
                      "headline": run["headline"],
                      "report": f"{base}/report.md" if run["report"] else None,
                      "figures": [f"{base}/{Path(f).name}" for f in run["figures"]]})
    return {"directory": str(directory), "runs": found}


def run_file(directory: Path, name: str, run: str, file: str) -> Path:
    """The path of a run's file, or ExperimentFileNotFound for anything else."""
    wanted = f"no experiment file {name}/{run}/{file}"
    if not all(_PART.fullmatch(part) for part in (name, run, file)) or Path(file).suffix not in MEDIA:
        raise ExperimentFileNotFound(wanted)
    root = directory.resolve()
    path = (root / name / run / file).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise ExperimentFileNotFound(wanted)
    return path


async def list_experiments(request: Request) -> Response:
    directory = cast(Path, request.app.state.experiments_dir)
    return JSONOut(runs(directory))


async def experiment_file(request: Request) -> Response:
    params = request.path_params
    path = run_file(cast(Path, request.app.state.experiments_dir), params["name"], params["run"], params["file"])
    return FileResponse(path, media_type=MEDIA[path.suffix], headers={"Cache-Control": "no-store",
                                                                      "X-Content-Type-Options": "nosniff"})

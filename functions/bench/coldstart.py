"""`hexq bench --cold-start`: what a Lambda cold start pays to import and bootstrap each handler
module, per backend, and roughly how large the deployment package is.

Each measurement is a fresh interpreter (a cold start is one), timing `import hexq.functions.lambda_*`,
which builds the container at module level exactly as Lambda does. Nothing connects at import,
so no server is needed. The package size adds up the installed files of requirements.txt's
distributions and their dependencies, plus hexq's own packages: what `sam build` copies.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

MODULES = ("hexq.functions.lambda_api", "hexq.functions.lambda_worker", "hexq.functions.lambda_poller")
BACKENDS = {"sqlite": "sqlite:////tmp/hexq-coldstart.db", "redis": "redis://127.0.0.1:6379/0",
            "aws": "aws://?region=us-east-1&prefix=hexq-coldstart"}
ROOT = Path(__file__).resolve().parents[2]
_PROBE = """
import json, sys, time
started = time.perf_counter()
import importlib
importlib.import_module(sys.argv[1])
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "boto3": "boto3" in sys.modules, "redis": "redis" in sys.modules}))
"""


def cold_start(runs: int = 5) -> dict[str, Any]:
    """Median import-and-bootstrap seconds per (backend, module), and the package size."""
    results: dict[str, Any] = {}
    for backend, url in BACKENDS.items():
        results[backend] = {module: _measure(module, url, runs) for module in MODULES}
    return {"runs": runs, "imports": results, "package_bytes": package_size()}


def _measure(module: str, url: str, runs: int) -> dict[str, Any]:
    # HEXQ_ALLOW_OPEN_API: without keys the API would refuse to serve and skip building the app it times.
    env = {**os.environ, "HEXQ_BACKEND": url, "HEXQ_WORKER_FUNCTION": "hexq-worker", "HEXQ_ALLOW_OPEN_API": "true",
           "AWS_DEFAULT_REGION": "us-east-1", "PYTHONPATH": str(ROOT)}
    samples: list[dict[str, Any]] = []
    for _ in range(runs):
        done = subprocess.run([sys.executable, "-c", _PROBE, module], env=env, capture_output=True, text=True,
                              timeout=60, check=False)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["failed"])[-1]
            return {"error": last}
        samples.append(json.loads(done.stdout))
    return {"ms": round(statistics.median(s["seconds"] for s in samples) * 1000, 1),
            "imports_boto3": samples[0]["boto3"], "imports_redis": samples[0]["redis"]}


def package_size() -> int:
    """Bytes of the Lambda package: requirements.txt's closure as installed here, plus hexq's code."""
    wanted = _requirements(ROOT / "requirements.txt")
    seen: set[str] = set()
    total = 0
    while wanted:
        name = wanted.pop()
        key = name.lower().replace("_", "-")
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        total += sum(f.size or 0 for f in dist.files or [])
        wanted.extend(_name(r) for r in dist.requires or [] if "extra ==" not in r)
    for package in ("core", "adapters", "functions"):
        total += sum(p.stat().st_size for p in (ROOT / package).rglob("*") if p.is_file() and "__pycache__" not in
                     p.parts)
    return total


def _requirements(path: Path) -> list[str]:
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return [_name(line) for line in lines if line]


def _name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9_.-]+", requirement)
    return match.group(0) if match else requirement


def render(report: dict[str, Any]) -> str:
    lines = [f"cold start: median of {report['runs']} fresh interpreters, import + bootstrap (ms)",
             f"{'backend':<8} " + " ".join(f"{m.split('.')[-1]:>22}" for m in MODULES)]
    for backend, modules in report["imports"].items():
        cells = []
        for module in MODULES:
            r = modules[module]
            cells.append(f"{'error':>22}" if "error" in r else
                         f"{r['ms']:>10.1f}{' (boto3)' if r['imports_boto3'] else '':>12}")
        lines.append(f"{backend:<8} " + " ".join(cells))
    lines.append(f"deployment package (estimated from installed files): {report['package_bytes'] / 1e6:.1f} MB")
    return "\n".join(lines)

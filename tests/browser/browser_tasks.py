"""A task type for the browser tests: it fails until its flag file exists — a bug, then the fix deployed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hexq import task


@task("until_fixed", max_attempts=1)
def until_fixed(payload: dict[str, Any]) -> str:
    if not Path(str(payload["flag"])).exists():
        raise RuntimeError("not fixed yet")
    return "fixed"

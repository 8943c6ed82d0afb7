"""A task type on a queue of its own, as in the README's `@task("resize_image", queue="images")`: for
tests/integration/test_serve.py. Load with HEXQ_TASKS=hexq.functions.examples,tests.integration.queue_tasks
(the repo root must be on PYTHONPATH)."""

from __future__ import annotations

import os
from typing import Any

from hexq.core.registry import task


@task("resize", queue="images")
def resize(payload: dict[str, Any]) -> dict[str, int]:
    return {"pid": os.getpid()}

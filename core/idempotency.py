"""Idempotency keys: when a resubmit under a key is the same request, and the check a bulk makes first.

A key answers with the task it first made only for the same request (type, payload, queue and priority);
a different request under a used key is an IdempotencyMismatch (422). Adapters run `check` inside the
step that stores, so a bulk with one mismatching element stores none of its tasks.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from hexq.core.errors import IdempotencyMismatch
from hexq.core.model import Task


def fingerprint(task: Task) -> str:
    """The request a task was made from, as canonical JSON: equal for equal requests on every backend."""
    return json.dumps([task.type, task.payload, task.queue, int(task.priority)], sort_keys=True,
                      separators=(",", ":"), ensure_ascii=False)


def mismatch(key: str | None) -> IdempotencyMismatch:
    return IdempotencyMismatch(f"idempotency key {key!r} was used for a different task")


def check(tasks: Sequence[Task], earlier: Callable[[Task], Task | None]) -> None:
    """Raise IdempotencyMismatch if a task's (tenant, key) names a different request: one stored before
    (`earlier` finds it) or one earlier in `tasks`."""
    first: dict[tuple[str, str], str] = {}
    for task in tasks:
        if task.idempotency_key is None:
            continue
        mark = (task.tenant, task.idempotency_key)
        if mark not in first:
            stored = earlier(task)
            first[mark] = fingerprint(task if stored is None else stored)
        if first[mark] != fingerprint(task):
            raise mismatch(task.idempotency_key)

"""The per-tenant cap on waiting tasks, as the adapters that check it in Python apply it.

An adapter calls `check` inside the same lock or transaction as the enqueue, so the count it reads is
the count the enqueue changes (the Redis adapter does the same inside its enqueue script).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

from hexq.core.errors import QueueFull
from hexq.core.model import WAITING, Task


def added(tasks: Sequence[Task], known: Callable[[Task], bool]) -> Counter[str]:
    """Per tenant, how many waiting tasks enqueuing `tasks` would add.

    `known(task)` says whether the store already answers `task` with an earlier one (its idempotency
    key or its id); such a task adds nothing, and neither does a repeat of a key or id within `tasks`.
    """
    seen: set[tuple[str, ...]] = set()
    adding: Counter[str] = Counter()
    for task in tasks:
        marks: set[tuple[str, ...]] = {("id", task.id)}
        if task.idempotency_key is not None:
            marks.add(("key", task.tenant, task.idempotency_key))
        if marks & seen or known(task):
            continue
        seen |= marks
        if task.status in WAITING:
            adding[task.tenant] += 1
    return adding


def check(tasks: Sequence[Task], cap: int, known: Callable[[Task], bool], waiting: Callable[[str], int]) -> None:
    """Raise QueueFull for the first tenant that would have more than `cap` waiting tasks."""
    for tenant, adding in added(tasks, known).items():
        if waiting(tenant) + adding > cap:
            raise QueueFull(tenant, cap)

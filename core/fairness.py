"""Fair queues: within one priority level of a queue, tenants take turns (FIFO within a tenant).

The rule is start-time fair queueing. Each queued task carries a *turn* (a number), and claims take the
lowest turn first, exactly as they took the lowest seq before; so the claim itself is unchanged and costs
what it did. A turn is given once, when the task first becomes queued:

    turn = max(the tenant's last turn in this queue and level + step, the level's clock)

where the level's clock is the highest turn claimed there so far (it starts, with the level's first task,
at that task's seq), and step = 1 / the tenant's weight. So a tenant with a backlog has turns far ahead of
the clock, and a tenant arriving later starts at the clock: its tasks interleave one for one with the
backlog instead of waiting behind it, and a tenant of weight w gets w turns for another's one. A tenant
alone gets consecutive turns: the order of its tasks is their submit order, as before.

A released or retried task, or a replayed dead one, keeps the turn it had (it keeps its place, at the front
of the level); a delayed task gets its turn when it is promoted. Turns are whole numbers unless a weight
is above 1. Every backend but aws applies this (the capability table says why not aws); the memory backend
is the reference, SQLite and Redis (scripts/_lib.lua next_turn) follow the same formula.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from hexq.core.errors import ConfigurationError

MAX_WEIGHT: Final = 100  # a step of 1/100 stays far above a double's resolution at the turns' magnitude
_ENTRY = re.compile(r"\s*([^=,\s]+)\s*=\s*(\d+)\s*")


def next_turn(clock: float | None, last: float | None, step: float, seq: int) -> float:
    """The turn of a tenant's next task in one queue and level: `clock` is the level's (None: it has none
    yet, and starts at `seq`, the task's own), `last` the tenant's last turn there (None: it had none)."""
    start = float(seq) if clock is None else clock
    return start if last is None else max(last + step, start)


def step_of(weights: Mapping[str, int], tenant: str) -> float:
    """How far a tenant's turns advance per task: 1 / its weight (weight 1 unless `weights` names it)."""
    weight = weights.get(tenant, 1)
    return 1.0 if weight == 1 else 1.0 / weight


def parse_weights(text: str) -> dict[str, int]:
    """HEXQ_TENANT_WEIGHTS: "acme=3,globex=1" -> {"acme": 3, "globex": 1}; '' -> {}. ConfigurationError
    names the entry that is not `tenant=weight` with a whole weight from 1 to MAX_WEIGHT."""
    weights: dict[str, int] = {}
    for entry in filter(str.strip, text.split(",")):
        match = _ENTRY.fullmatch(entry)
        if match is None or not 1 <= int(match[2]) <= MAX_WEIGHT:
            raise ConfigurationError(f"HEXQ_TENANT_WEIGHTS entry {entry.strip()!r} is not tenant=weight with a whole "
                                     f"weight from 1 to {MAX_WEIGHT}")
        weights[match[1]] = int(match[2])
    return weights

"""How a claim across several shards is split (the sharded layout: docs/redis-cluster-sharding.md, section 5).

A worker knows each of its shards' head: the ready score of the first task there, as _claim.lua orders a ready
set ((3 - priority) * 2^40 + turn: lower is sooner), or None when the shard has nothing ready; and the due time of
its earliest scheduled task. A claim takes from the shards whose head is at the best priority level among them
(candidates), so strict priority holds across shards as far as the heads are current; within that level shards
take turns in runs (Runs), because turns are counted per shard and cannot be compared across shards. A shard
whose scheduled task is due is a candidate too (its claim promotes it first; its level is not known until then).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

BAND: Final = 2**40  # one priority level's band of ready scores (_lib.lua BAND)
_OLD: Final = 1e12  # a delayed score below this is seconds (hexq 0.1.0), else whole µs (_lib.lua OLD)


def band(score: float) -> int:
    """The band of a ready score: 0 for critical .. 3 for low (3 - priority)."""
    return int(score // BAND)


def due_seconds(score: float) -> float:
    """A `delayed` score as seconds since the epoch (µs, or seconds for data of hexq 0.1.0)."""
    return score if score < _OLD else score / 1_000_000


@dataclass(frozen=True, slots=True)
class Head:
    """What a peek saw in one shard: the best ready score (None: nothing ready in the worker's unpaused queues) and
    when its earliest scheduled task is due (None: nothing scheduled)."""

    ready: float | None
    due: float | None

    def due_by(self, now: float) -> bool:
        return self.due is not None and self.due <= now


def candidates(heads: Sequence[tuple[str, Head]], now: float) -> list[str]:
    """The shards a claim may take from, in the heads' order: those whose head is in the best band present, and
    those with a scheduled task due by `now` (their level is known only once their claim promotes it)."""
    ready = [band(head.ready) for _, head in heads if head.ready is not None]
    best = min(ready) if ready else None
    return [shard for shard, head in heads if (head.ready is not None and band(head.ready) == best)
            or head.due_by(now)]


@dataclass(slots=True)
class Runs:
    """Which of the candidate shards a worker claims from: one at a time, up to `length` claims in a row, then the
    next. One shard per claim keeps a claim one script call, and the tasks it brings come back to be settled in one
    shard, where the next claim of the run rides along (settle_and_claim): splitting every claim over k shards
    cost k calls a round (measured: 2.7x the script calls per task over 3 shards). Within a priority level the
    shards are so served round robin in runs; a run ends early when its shard stops being a candidate."""

    length: int = 8
    current: str | None = None
    used: int = 0

    def pick(self, chosen: Sequence[str], start: int) -> str:
        """The shard for this claim; `start` places a new run when the current shard is not among `chosen`."""
        current = self.current
        if current is not None and current in chosen and self.used < self.length:
            self.used += 1
            return current
        at = (chosen.index(current) + 1) if current in chosen else start
        picked = chosen[at % len(chosen)]
        self.current, self.used = picked, 1
        return picked


def next_due(heads: Sequence[Head], now: float) -> float | None:
    """Seconds until the earliest scheduled task of these heads is due (0 if one is), or None."""
    dues = [head.due for head in heads if head.due is not None]
    return max(0.0, min(dues) - now) if dues else None

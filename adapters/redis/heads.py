"""How a claim across several shards is split (the sharded layout: docs/redis-cluster-sharding.md, section 5).

A worker knows each of its shards' head: the ready score of the first task there, as _claim.lua orders a ready
set ((3 - priority) * 2^40 + turn: lower is sooner), or None when the shard has nothing ready; and the due time of
its earliest scheduled task. A claim of n takes from the shards whose head is at the best priority level among
them, n split evenly, so strict priority holds across shards as far as the heads are current; within that level
shards take turns (the rotation `start`), because turns are counted per shard and cannot be compared across
shards. A shard whose scheduled task is due joins the best level (its claim promotes it first; its level is not
known until then).
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


def allocate(heads: Sequence[tuple[str, Head]], n: int, now: float, start: int = 0) -> list[tuple[str, int]]:
    """(shard, how many to claim there) for a claim of `n`: the shards whose head is in the best band, and those
    with a scheduled task due by `now`, rotated by `start` (a worker moves it on every claim, so its workers spread
    over a hot queue's shards), n split evenly with the first n % k one more. Shards that get 0 are left out;
    [] when no shard has anything to claim."""
    ready = [band(head.ready) for _, head in heads if head.ready is not None]
    best = min(ready) if ready else None
    chosen = [shard for shard, head in heads
              if (head.ready is not None and band(head.ready) == best) or head.due_by(now)]
    if n <= 0 or not chosen:
        return []
    k = len(chosen)
    chosen = chosen[start % k:] + chosen[:start % k]
    share, extra = divmod(n, k)
    return [(shard, share + (i < extra)) for i, shard in enumerate(chosen) if share + (i < extra) > 0]


def next_due(heads: Sequence[Head], now: float) -> float | None:
    """Seconds until the earliest scheduled task of these heads is due (0 if one is), or None."""
    dues = [head.due for head in heads if head.due is not None]
    return max(0.0, min(dues) - now) if dues else None

"""How a claim across several shards is split (the sharded layout: docs/redis-cluster-sharding.md, section 5).

A worker knows each of its shards' head: the ready score of the first task there, as _claim.lua orders a ready
set ((3 - priority) * 2^40 + turn: lower is sooner), or None when the shard has nothing ready. A claim of n takes
from the shards whose head is at the best priority level among them, n split evenly, so strict priority holds
across shards as far as the heads are current; within that level shards take turns (the rotation `start`),
because turns are counted per shard and cannot be compared across shards.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

BAND: Final = 2**40  # one priority level's band of ready scores (_lib.lua BAND)


def band(score: float) -> int:
    """The band of a ready score: 0 for critical .. 3 for low (3 - priority)."""
    return int(score // BAND)


def allocate(heads: Sequence[tuple[str, float | None]], n: int, start: int = 0) -> list[tuple[str, int]]:
    """(shard, how many to claim there) for a claim of `n`: the shards whose head is in the best band, rotated by
    `start` (a worker moves it on every claim, so its workers spread over a hot queue's shards), n split evenly
    with the first n % k one more. Shards that get 0 are left out; [] when no shard has anything ready."""
    ready = [(shard, band(head)) for shard, head in heads if head is not None]
    if n <= 0 or not ready:
        return []
    best = min(level for _, level in ready)
    chosen = [shard for shard, level in ready if level == best]
    k = len(chosen)
    chosen = chosen[start % k:] + chosen[:start % k]
    share, extra = divmod(n, k)
    return [(shard, share + (i < extra)) for i, shard in enumerate(chosen) if share + (i < extra) > 0]

"""What several shards answer, made into one answer (the sharded layout: docs/redis-cluster-sharding.md, section 7).

Pages. Every shard answers query.lua with the same cursor ("continue below this seq"), and seqs come from one counter
for the whole partition, so they order tasks across shards and the merged page keeps a one-number cursor.

What a shard's answer covers: its matches from the cursor down to its own next cursor, that seq included (the
last task it returned, when it had more than the limit; the last entry it examined, when its scan bound cut it
short), or all the way down when its next cursor is ''. So the tasks at or above the highest of the shards'
next cursors (the floor) are every match there, from every shard. The page is the newest `limit` of those; the
next cursor is the last one taken when more were known, else the floor. What a shard returned below that is
dropped from this page and comes again on the next: nothing is skipped, nothing repeats.

Stats. Each shard's stats.lua snapshot is consistent on its own; their sum is not one snapshot (the shards are
read at slightly different moments), which the README states.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from hexq.core.model import Priority, Stats, TaskStatus

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ShardPage(Generic[T]):
    """One shard's answer: its items as (seq, item), newest first; its next cursor ('' when it has no more);
    how many index entries it examined."""

    items: Sequence[tuple[int, T]]
    cursor: str
    scanned: int


def page(pages: Sequence[ShardPage[T]], limit: int) -> tuple[list[T], str, int]:
    """The page of at most `limit` items that the shards' answers to one cursor make together:
    (items newest first, the next cursor or '' when the listing is complete, entries examined in all)."""
    scanned = sum(page.scanned for page in pages)
    cut = [int(page.cursor) for page in pages if page.cursor]
    floor = max(cut) if cut else None
    known = sorted((entry for page in pages for entry in page.items if floor is None or entry[0] >= floor),
                   key=lambda entry: entry[0], reverse=True)
    if limit <= 0:
        return [], "", scanned
    if len(known) > limit:
        return [item for _, item in known[:limit]], str(known[limit - 1][0]), scanned
    return [item for _, item in known], "" if floor is None else str(floor), scanned


def stats(parts: Sequence[Stats], paused: frozenset[str]) -> Stats:
    """The shards' stats as one: counts and depths summed (a hot queue's shards, and the legacy shard, add up
    under the queue's name), the oldest age the largest, and the paused queues from the one global set."""
    by_status: dict[TaskStatus, int] = {}
    queued: dict[str, dict[Priority, int]] = {}
    depth: dict[tuple[str, Priority, str], int] = {}
    oldest: dict[tuple[str, Priority], float] = {}
    for part in parts:
        for status, count in part.by_status.items():
            by_status[status] = by_status.get(status, 0) + count
        for queue, levels in part.queued.items():
            into = queued.setdefault(queue, {})
            for priority, count in levels.items():
                into[priority] = into.get(priority, 0) + count
        for place, count in part.depth.items():
            depth[place] = depth.get(place, 0) + count
        for level, age in part.oldest_age.items():
            oldest[level] = max(age, oldest.get(level, age))
    return Stats(by_status, queued, depth, oldest, paused)

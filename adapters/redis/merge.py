"""What several shards answer, made into one answer (the sharded layout: docs/redis-cluster-sharding.md, section 7).

Pages. Each shard numbers its tasks with its own seq, so a listing over shards keeps one cursor per shard: the
cursor `s/<code>=<seq>/<code>=<seq>...` says, for each shard still to be read, the seq its next page continues
below (`<code>=` with nothing after it: from its newest). A shard missing from a cursor is finished. Every shard
answers its own cursor with up to `limit` matches; the page is the newest `limit` of all of them by creation time;
a shard whose answer was cut continues below its last item taken, a shard whose items were all taken continues
from its own next cursor, and one with nothing left drops out. So nothing is skipped and nothing repeats; the order
is newest first within a page and within a shard, and across pages as far as shards' creation times interleave.

Stats. Each shard's stats.lua snapshot is consistent on its own; their sum is not one snapshot (the shards are
read at slightly different moments), which the README states.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from hexq.core.model import Priority, Stats, TaskStatus

T = TypeVar("T")
PREFIX = "s/"
_ENTRY = re.compile(r"([A-Za-z0-9_.:-]{1,64})=([0-9]{0,18})")


@dataclass(frozen=True, slots=True)
class ShardPage(Generic[T]):
    """One shard's answer: its items as (created_at, seq, item), newest first; its next cursor ('' when it has no
    more); how many index entries it examined."""

    items: Sequence[tuple[float, int, T]]
    cursor: str
    scanned: int


def parse(cursor: str | None, shards: Sequence[str]) -> dict[str, str]:
    """The shards to read and each one's own cursor ('' = from its newest): every shard for no cursor (or one that
    is not a sharded cursor: a page of an unsharded listing starts over); else the shards the cursor names."""
    if not cursor or not cursor.startswith(PREFIX):
        return {shard: "" for shard in shards}
    found: dict[str, str] = {}
    for entry in cursor[len(PREFIX):].split("/"):
        match = _ENTRY.fullmatch(entry)
        if match:
            found[match[1]] = match[2]
    return found


def page(pages: Mapping[str, ShardPage[T]], limit: int) -> tuple[list[T], str, int]:
    """The page of at most `limit` items the shards' answers make together: (items newest first, the next cursor
    or '' when every shard is finished, entries examined in all)."""
    scanned = sum(part.scanned for part in pages.values())
    ranked = sorted(((created, shard, seq, item) for shard, part in pages.items()
                     for created, seq, item in part.items),
                    key=lambda entry: (-entry[0], entry[1], -entry[2]))
    taken = ranked[:max(limit, 0)]
    last: dict[str, int] = {}
    count: dict[str, int] = {}
    for _, shard, seq, _item in taken:
        last[shard] = seq
        count[shard] = count.get(shard, 0) + 1
    rest: list[str] = []
    for shard, part in pages.items():
        if count.get(shard, 0) < len(part.items):  # cut: continue below its last item taken (or where it began)
            rest.append(f"{shard}={last[shard]}" if shard in last else f"{shard}={_began(part)}")
        elif part.cursor:
            rest.append(f"{shard}={part.cursor}")
    return [item for *_, item in taken], (PREFIX + "/".join(rest)) if rest else "", scanned


def _began(part: ShardPage[T]) -> str:
    """The cursor that reads this shard's answer again: just above its first item."""
    return str(part.items[0][1] + 1)


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

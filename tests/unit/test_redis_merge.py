"""Merging shards' answers (adapters/redis/merge.py). Pages: following the merged cursor lists every match exactly
once, newest first, whatever the shards hold, the page size and the scan bound (each shard a model of query.lua).
Stats: counts add up, the oldest age is the oldest."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hexq.adapters.redis.merge import ShardPage, page, stats
from hexq.core.model import Priority, Stats, TaskStatus


def query_lua(entries: list[tuple[int, bool]], cursor: str, limit: int, bound: int) -> ShardPage[int]:
    """What query.lua answers for one shard: `entries` are its index (seq, matches the filter), newest first.
    (Bounds here stay under query.lua's chunk of 100, so its scan is one chunk, `done` when that came back short.)"""
    below = [(seq, hit) for seq, hit in entries if not cursor or seq < int(cursor)]
    chunk = below[:bound]
    done = len(chunk) < bound
    found: list[int] = []
    scanned, last = 0, None
    for seq, hit in chunk:
        scanned, last = scanned + 1, seq
        if hit:
            found.append(seq)
            if len(found) > limit:
                break
    if len(found) > limit:
        next_cursor = str(found[limit - 1]) if limit > 0 else ""
    else:
        next_cursor = "" if done or last is None else str(last)
    return ShardPage([(seq, seq) for seq in found[:limit]], next_cursor, scanned)


@st.composite
def shards(draw: st.DrawFn) -> list[list[tuple[int, bool]]]:
    """Up to 5 shards holding distinct seqs from one counter, each entry matching or not."""
    seqs = draw(st.lists(st.integers(1, 400), unique=True, max_size=60))
    count = draw(st.integers(1, 5))
    held: list[list[tuple[int, bool]]] = [[] for _ in range(count)]
    for seq in seqs:
        held[draw(st.integers(0, count - 1))].append((seq, draw(st.booleans())))
    return [sorted(shard, reverse=True) for shard in held]


@settings(max_examples=300, deadline=None)
@given(held=shards(), limit=st.integers(1, 7), bound=st.integers(1, 9))
def test_following_cursors_lists_every_match_once_newest_first(held: list[list[tuple[int, bool]]], limit: int,
                                                               bound: int) -> None:
    listed: list[int] = []
    cursor, pages = "", 0
    while True:
        items, cursor, _ = page([query_lua(shard, cursor, limit, bound) for shard in held], limit)
        assert len(items) <= limit
        listed += items
        pages += 1
        assert pages <= 1000, "the cursor must move on"
        if not cursor:
            break
    expected = sorted((seq for shard in held for seq, hit in shard if hit), reverse=True)
    assert listed == expected


def test_a_full_page_ends_at_its_last_item_and_the_rest_comes_next() -> None:
    answers = [ShardPage([(9, "a"), (5, "b")], "5", 4), ShardPage([(8, "c"), (7, "d")], "7", 2)]
    assert page(answers, 2) == (["a", "c"], "8", 6)


def test_a_shard_cut_short_holds_the_others_at_its_cursor() -> None:
    # The second shard examined down to 7 only: the first's 5 waits for the next page, below 7.
    answers = [ShardPage([(9, "a"), (5, "b")], "", 4), ShardPage([], "7", 3)]
    assert page(answers, 10) == (["a"], "7", 7)


def test_complete_shards_make_a_complete_page() -> None:
    assert page([ShardPage([(3, "x")], "", 1), ShardPage([(4, "y")], "", 2)], 5) == (["y", "x"], "", 3)


def test_stats_add_up_across_shards() -> None:
    high, normal = Priority.HIGH, Priority.NORMAL
    one = Stats({TaskStatus.QUEUED: 3, TaskStatus.DEAD: 1}, {"hot": {high: 2, normal: 1}},
                {("hot", high, "queued"): 2, ("hot", normal, "queued"): 1, ("hot", high, "dead"): 1},
                {("hot", high): 5.0})
    two = Stats({TaskStatus.QUEUED: 4}, {"hot": {high: 4}, "mail": {normal: 0}}, {("hot", high, "queued"): 4},
                {("hot", high): 9.0, ("mail", normal): 1.0})
    merged = stats([one, two], frozenset({"mail"}))
    assert merged.by_status == {TaskStatus.QUEUED: 7, TaskStatus.DEAD: 1}
    assert merged.queued == {"hot": {high: 6, normal: 1}, "mail": {normal: 0}} and merged.backlog == 7
    assert merged.depth == {("hot", high, "queued"): 6, ("hot", normal, "queued"): 1, ("hot", high, "dead"): 1}
    assert merged.oldest_age == {("hot", high): 9.0, ("mail", normal): 1.0}
    assert merged.paused == frozenset({"mail"})

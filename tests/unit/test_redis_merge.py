"""Merging shards' answers (adapters/redis/merge.py). Pages: following the merged cursor lists every match exactly
once, each shard's newest first and each page newest first, whatever the shards hold, the page size and the scan
bound (each shard a model of query.lua with its own seq).
Stats: counts add up, the oldest age is the oldest."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hexq.adapters.redis.merge import ShardPage, page, parse, stats
from hexq.core.model import Priority, Stats, TaskStatus

Entry = tuple[int, int, bool]  # (seq in its shard, created at, matches the filter)


def query_lua(entries: list[Entry], cursor: str, limit: int, bound: int) -> ShardPage[int]:
    """What query.lua answers for one shard: `entries` are its index, newest first. Items are the created times
    (unique across shards here, so they name the task). (Bounds stay under query.lua's chunk of 100, so its scan
    is one chunk, `done` when that came back short.)"""
    below = [entry for entry in entries if not cursor or entry[0] < int(cursor)]
    chunk = below[:bound]
    done = len(chunk) < bound
    found: list[tuple[int, int]] = []
    scanned, last = 0, None
    for seq, created, hit in chunk:
        scanned, last = scanned + 1, seq
        if hit:
            found.append((seq, created))
            if len(found) > limit:
                break
    if len(found) > limit:
        next_cursor = str(found[limit - 1][0]) if limit > 0 else ""
    else:
        next_cursor = "" if done or last is None else str(last)
    return ShardPage([(float(created), seq, created) for seq, created in found[:limit]], next_cursor, scanned)


@st.composite
def shards(draw: st.DrawFn) -> dict[str, list[Entry]]:
    """Up to 5 shards; each numbers its tasks 1, 2, ... in creation order; creation times unique overall."""
    times = draw(st.lists(st.integers(1, 400), unique=True, max_size=60))
    count = draw(st.integers(1, 5))
    held: dict[str, list[Entry]] = {f"q{i}": [] for i in range(count)}
    for created in sorted(times):
        shard = held[f"q{draw(st.integers(0, count - 1))}"]
        shard.append((len(shard) + 1, created, draw(st.booleans())))
    return {code: sorted(entries, reverse=True) for code, entries in held.items()}


@settings(max_examples=300, deadline=None)
@given(held=shards(), limit=st.integers(1, 7), bound=st.integers(1, 9))
def test_following_cursors_lists_every_match_once(held: dict[str, list[Entry]], limit: int, bound: int) -> None:
    listed: list[int] = []
    cursors, pages = parse(None, list(held)), 0
    while True:
        items, cursor, _ = page({code: query_lua(held[code], own, limit, bound) for code, own in cursors.items()},
                                limit)
        assert len(items) <= limit and items == sorted(items, reverse=True)
        listed += items
        pages += 1
        assert pages <= 1000, "the cursor must move on"
        if not cursor:
            break
        assert cursor.startswith("s/")
        cursors = parse(cursor, [])
    assert sorted(listed) == sorted(created for entries in held.values() for _, created, hit in entries if hit)
    for entries in held.values():  # each shard's tasks newest first
        mine = [created for _, created, hit in entries if hit]
        assert [created for created in listed if created in mine] == mine


def test_a_full_page_continues_each_shard_below_its_last_item_taken() -> None:
    answers = {"a": ShardPage([(9.0, 4, "a9"), (5.0, 3, "a5")], "3", 4),
               "b": ShardPage([(8.0, 7, "b8"), (7.0, 6, "b7")], "6", 2)}
    assert page(answers, 2) == (["a9", "b8"], "s/a=4/b=7", 6)


def test_finished_shards_drop_out_and_a_complete_listing_has_no_cursor() -> None:
    answers = {"a": ShardPage([(3.0, 1, "x")], "", 1), "b": ShardPage([(4.0, 2, "y")], "", 2)}
    assert page(answers, 5) == (["y", "x"], "", 3)
    assert page({"a": ShardPage([], "", 0), "b": ShardPage([(1.0, 1, "z")], "40", 9)}, 5) == (["z"], "s/b=40", 9)


def test_a_cursor_that_is_not_a_sharded_one_starts_over() -> None:
    assert parse("17", ["a", "b"]) == {"a": "", "b": ""} and parse(None, ["a"]) == {"a": ""}
    assert parse("s/a=3/b=/bad entry/c=x", ["z"]) == {"a": "3", "b": ""}


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

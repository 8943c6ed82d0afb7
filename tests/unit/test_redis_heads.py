"""Splitting a claim across shards (adapters/redis/heads.py): only the best priority level present, evenly,
rotated so that workers spread over a hot queue's shards."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hexq.adapters.redis.heads import BAND, Head, allocate, band, due_seconds, next_due
from hexq.core.model import Priority


def score(priority: Priority, turn: int) -> Head:
    return Head(float((3 - priority) * BAND + turn), None)  # as _lib.lua ready_score


NOTHING = Head(None, None)


def test_the_best_level_present_wins_whatever_the_turns() -> None:
    heads = [("a", score(Priority.NORMAL, 1)), ("b", score(Priority.HIGH, 10**9)), ("c", NOTHING),
             ("d", score(Priority.HIGH, 5))]
    assert allocate(heads, 10, 0.0) == [("b", 5), ("d", 5)]
    assert band(float(10**12)) == 0 and band(float(3 * BAND)) == 3


def test_the_rotation_moves_the_remainder_and_the_order() -> None:
    heads = [(s, score(Priority.NORMAL, 0)) for s in ("a", "b", "c")]
    assert allocate(heads, 4, 0.0, start=0) == [("a", 2), ("b", 1), ("c", 1)]
    assert allocate(heads, 4, 0.0, start=1) == [("b", 2), ("c", 1), ("a", 1)]
    assert allocate(heads, 1, 0.0, start=2) == [("c", 1)]


@pytest.mark.parametrize("n", [0, -1])
def test_nothing_to_claim(n: int) -> None:
    assert allocate([("a", Head(0.0, None))], n, 0.0) == []
    assert allocate([("a", NOTHING)], 5, 0.0) == []
    assert allocate([("a", Head(None, 10.0))], 5, 9.0) == []  # scheduled, not due yet


@given(levels=st.lists(st.one_of(st.none(), st.integers(0, 3)), min_size=1, max_size=8), n=st.integers(1, 100),
       start=st.integers(0, 50))
def test_a_claim_is_split_exactly_and_evenly(levels: list[int | None], n: int, start: int) -> None:
    heads = [(f"s{i}", NOTHING if level is None else Head(float(level * BAND + i), None))
             for i, level in enumerate(levels)]
    split = allocate(heads, n, 0.0, start)
    present = [level for level in levels if level is not None]
    if not present:
        assert split == []
        return
    assert sum(count for _, count in split) == n
    assert max(count for _, count in split) - min(count for _, count in split) <= 1
    assert {levels[int(shard[1:])] for shard, _ in split} == {min(present)}


def test_a_shard_with_a_due_scheduled_task_joins_the_best_level() -> None:
    heads = [("a", score(Priority.HIGH, 3)), ("b", Head(None, 100.0)), ("c", score(Priority.LOW, 1))]
    assert allocate(heads, 4, 100.0) == [("a", 2), ("b", 2)]
    assert allocate(heads, 4, 99.0) == [("a", 4)]
    assert next_due([head for _, head in heads], 90.0) == 10.0 and next_due([NOTHING], 0.0) is None
    assert due_seconds(1_700_000_000_000_000) == 1_700_000_000.0 and due_seconds(1_700_000_000.5) == 1_700_000_000.5

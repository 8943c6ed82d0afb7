"""Splitting a claim across shards (adapters/redis/heads.py): only the best priority level present, evenly,
rotated so that workers spread over a hot queue's shards."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hexq.adapters.redis.heads import BAND, allocate, band
from hexq.core.model import Priority


def score(priority: Priority, turn: int) -> float:
    return float((3 - priority) * BAND + turn)  # as _lib.lua ready_score


def test_the_best_level_present_wins_whatever_the_turns() -> None:
    heads = [("a", score(Priority.NORMAL, 1)), ("b", score(Priority.HIGH, 10**9)), ("c", None),
             ("d", score(Priority.HIGH, 5))]
    assert allocate(heads, 10) == [("b", 5), ("d", 5)]
    assert band(score(Priority.CRITICAL, 10**12)) == 0 and band(score(Priority.LOW, 0)) == 3


def test_the_rotation_moves_the_remainder_and_the_order() -> None:
    heads = [(s, score(Priority.NORMAL, 0)) for s in ("a", "b", "c")]
    assert allocate(heads, 4, start=0) == [("a", 2), ("b", 1), ("c", 1)]
    assert allocate(heads, 4, start=1) == [("b", 2), ("c", 1), ("a", 1)]
    assert allocate(heads, 1, start=2) == [("c", 1)]


@pytest.mark.parametrize("n", [0, -1])
def test_nothing_to_claim(n: int) -> None:
    assert allocate([("a", 0.0)], n) == []
    assert allocate([("a", None)], 5) == []


@given(levels=st.lists(st.one_of(st.none(), st.integers(0, 3)), min_size=1, max_size=8), n=st.integers(1, 100),
       start=st.integers(0, 50))
def test_a_claim_is_split_exactly_and_evenly(levels: list[int | None], n: int, start: int) -> None:
    heads = [(f"s{i}", None if level is None else float(level * BAND + i)) for i, level in enumerate(levels)]
    split = allocate(heads, n, start)
    present = [level for level in levels if level is not None]
    if not present:
        assert split == []
        return
    assert sum(count for _, count in split) == n
    assert max(count for _, count in split) - min(count for _, count in split) <= 1
    assert {levels[int(shard[1:])] for shard, _ in split} == {min(present)}

"""Splitting a claim across shards (adapters/redis/heads.py): only the best priority level present, evenly,
rotated so that workers spread over a hot queue's shards."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from hexq.adapters.redis.heads import BAND, Head, Runs, band, candidates, due_seconds, next_due
from hexq.core.model import Priority


def score(priority: Priority, turn: int) -> Head:
    return Head(float((3 - priority) * BAND + turn), None)  # as _lib.lua ready_score


NOTHING = Head(None, None)


def test_the_best_level_present_wins_whatever_the_turns() -> None:
    heads = [("a", score(Priority.NORMAL, 1)), ("b", score(Priority.HIGH, 10**9)), ("c", NOTHING),
             ("d", score(Priority.HIGH, 5))]
    assert candidates(heads, 0.0) == ["b", "d"]
    assert band(float(10**12)) == 0 and band(float(3 * BAND)) == 3


def test_nothing_to_claim() -> None:
    assert candidates([("a", NOTHING)], 0.0) == []
    assert candidates([("a", Head(None, 10.0))], 9.0) == []  # scheduled, not due yet


def test_a_shard_with_a_due_scheduled_task_is_a_candidate_too() -> None:
    heads = [("a", score(Priority.HIGH, 3)), ("b", Head(None, 100.0)), ("c", score(Priority.LOW, 1))]
    assert candidates(heads, 100.0) == ["a", "b"]
    assert candidates(heads, 99.0) == ["a"]
    assert next_due([head for _, head in heads], 90.0) == 10.0 and next_due([NOTHING], 0.0) is None
    assert due_seconds(1_700_000_000_000_000) == 1_700_000_000.0 and due_seconds(1_700_000_000.5) == 1_700_000_000.5


def test_runs_stay_on_a_shard_then_move_to_the_next() -> None:
    runs = Runs(length=3)
    picked = [runs.pick(["a", "b", "c"], start=1) for _ in range(7)]
    assert picked == ["b", "b", "b", "c", "c", "c", "a"]


def test_a_run_ends_when_its_shard_is_no_longer_a_candidate() -> None:
    runs = Runs(length=8)
    assert runs.pick(["a", "b"], start=0) == "a"
    assert runs.pick(["b", "c"], start=5) == "c"  # a ran out: a new run where `start` says
    assert runs.pick(["b", "c"], start=0) == "c"


@given(length=st.integers(1, 5), shards=st.integers(1, 6), start=st.integers(0, 50))
def test_every_candidate_gets_its_run_in_turn(length: int, shards: int, start: int) -> None:
    chosen = [f"s{i}" for i in range(shards)]
    runs = Runs(length=length)
    picked = [runs.pick(chosen, start) for _ in range(length * shards)]
    assert sorted(set(picked)) == chosen and all(picked.count(s) == length for s in chosen)

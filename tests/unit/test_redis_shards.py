"""The shard layout of a Redis deployment that spreads over a cluster (adapters/redis/shards.py): codes, hot-queue
slot spreading, ids that name their shard, routing, and the URL options. No server: this is key arithmetic."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from hexq.adapters.redis import RedisBackend, ShardedRedisBackend, from_url
from hexq.adapters.redis.connection import parse
from hexq.adapters.redis.keys import Keys, is_part
from hexq.adapters.redis.shards import (
    MAX_HOT_SHARDS,
    Sharding,
    ShardLayout,
    hot_codes,
    queue_code,
    shard_of_id,
    task_id,
)
from hexq.core.errors import ConfigurationError, ValidationError
from hexq.core.model import new_task_id

LONG_QUEUE = "q" * 64


def slot(key: str) -> int:
    return key_slot(key.encode())


# -- keys ------------------------------------------------------------------------------------------------
def test_the_unsharded_layout_is_spelled_as_before() -> None:
    keys = Keys()
    assert (keys.prefix, keys.tag, keys.task("abc"), keys.ready("q")) == (
        "hexq:{hexq}:", "{hexq}", "hexq:{hexq}:task:abc", "hexq:{hexq}:ready:q")


def test_a_shard_has_its_own_tag_and_every_key_of_it_one_slot() -> None:
    keys = Keys("p", "emails")
    assert keys.prefix == "hexq:{p/emails}:"
    names = [keys.task("abc"), keys.done("abc"), keys.ready("emails"), keys.turns("emails"), keys.wake("emails"),
             keys.status("dead"), keys.waiting, keys.paused, keys.prefix + "leases"]
    assert {slot(name) for name in names} == {slot(keys.tag)}
    assert keys.tag != Keys("p").tag


@pytest.mark.parametrize("shard", ["", "a/b", "a{b", "x" * 65])
def test_a_shard_code_must_be_a_key_part(shard: str) -> None:
    with pytest.raises(ValidationError):
        Keys("p", shard)


# -- codes -----------------------------------------------------------------------------------------------
def test_a_short_queue_is_its_own_code_and_a_long_one_a_hash() -> None:
    assert queue_code("emails") == "emails"
    long_code = queue_code(LONG_QUEUE)
    assert len(long_code) == 13 and long_code.startswith("h") and long_code == queue_code(LONG_QUEUE)
    assert long_code != queue_code("r" * 64)


@pytest.mark.parametrize("n", [2, 3, 4, 6, MAX_HOT_SHARDS])
def test_hot_shards_land_in_the_middle_of_their_own_slot_range(n: int) -> None:
    codes = hot_codes("hexq", "bench", n)
    assert len(set(codes)) == n
    width = 16384 / n
    for k, code in enumerate(codes):
        assert code.startswith(f"bench-{k}.")
        assert k * width + width / 4 <= slot(Keys("hexq", code).tag) < (k + 1) * width - width / 4
    assert hot_codes("hexq", "bench", n) == codes  # every process computes the same codes


def test_three_hot_shards_meet_three_masters_of_a_default_cluster() -> None:
    # The slot ranges `redis-cli --cluster create` gives three masters.
    masters = [range(0, 5461), range(5461, 10923), range(10923, 16384)]
    codes = hot_codes("hexq", "default", 3)
    assert [next(i for i, r in enumerate(masters) if slot(Keys("hexq", c).tag) in r) for c in codes] == [0, 1, 2]


@pytest.mark.parametrize("n", [1, MAX_HOT_SHARDS + 1])
def test_a_hot_queue_has_two_to_64_shards(n: int) -> None:
    with pytest.raises(ValidationError):
        hot_codes("hexq", "bench", n)


# -- ids -------------------------------------------------------------------------------------------------
def test_an_id_names_its_shard_even_for_the_longest_codes() -> None:
    for code in [queue_code("emails"), *hot_codes("hexq", LONG_QUEUE, MAX_HOT_SHARDS)]:
        made = task_id(new_task_id(), code)
        assert is_part(made) and len(made) <= 64
        assert shard_of_id(made) == code


@pytest.mark.parametrize("legacy", [new_task_id(), "f" * 32 + ".", "F" * 32 + ".x", "x.y", "abc", "0" * 31 + ".q"])
def test_an_id_without_a_code_names_the_legacy_shard(legacy: str) -> None:
    assert shard_of_id(legacy) is None


@pytest.mark.parametrize("random_part", ["abc", "G" * 32, "0" * 33])
def test_the_random_part_of_an_id_is_32_hex_digits(random_part: str) -> None:
    with pytest.raises(ValidationError):
        task_id(random_part, "q")


# -- routing ---------------------------------------------------------------------------------------------
def test_a_queue_that_is_not_hot_has_one_shard() -> None:
    layout = ShardLayout("hexq", {"hot": 4})
    assert layout.shards("emails") == ("emails",)
    assert layout.route("emails", "t", None) == layout.route("emails", "t", "key") == "emails"


def test_a_keyed_task_of_a_hot_queue_always_goes_to_one_shard_and_keys_spread() -> None:
    layout = ShardLayout("hexq", {"hot": 4})
    first = layout.route("hot", "tenant", "key-1")
    layout.next_turn()
    assert layout.route("hot", "tenant", "key-1") == first
    assert layout.route("hot", "other", "key-1") in layout.shards("hot")
    assert {layout.route("hot", "tenant", f"key-{i}") for i in range(200)} == set(layout.shards("hot"))


def test_unkeyed_tasks_of_a_hot_queue_go_round_robin_one_step_per_request() -> None:
    layout = ShardLayout("hexq", {"hot": 3})
    seen = []
    for _ in range(6):
        seen.append(layout.route("hot", "t", None))
        assert layout.route("hot", "t", None) == seen[-1]  # one request stays in one shard
        layout.next_turn()
    assert seen == [*layout.shards("hot"), *layout.shards("hot")]


# -- URL options -----------------------------------------------------------------------------------------
def test_no_option_is_the_legacy_layout() -> None:
    assert parse("redis://127.0.0.1:6379/0").sharding is None
    assert parse("redis+cluster://127.0.0.1:7000,127.0.0.1:7001").sharding is None


@pytest.mark.parametrize("base", ["redis://127.0.0.1:6379/0?", "redis+cluster://127.0.0.1:7000,127.0.0.1:7001?"])
def test_shard_options_are_parsed_and_not_passed_to_the_driver(base: str) -> None:
    target = parse(base + "shards=per-queue&hot=bench:4,a.b:c:2&partition=p")
    assert target.sharding == Sharding((("bench", 4), ("a.b:c", 2)))
    assert target.partition == "p"
    assert "shards" not in target.url and "hot" not in target.url
    assert target.sharding.layout("p").shards("a.b:c") == hot_codes("p", "a.b:c", 2)


@pytest.mark.parametrize("query", ["shards=yes", "shards=", "hot=bench:4", "shards=per-queue&hot=bench:1",
                                   "shards=per-queue&hot=bench:65", "shards=per-queue&hot=bench:x",
                                   "shards=per-queue&hot=bench", "shards=per-queue&hot=a/b:2",
                                   "shards=per-queue&hot=bench:2,bench:3", "shards=per-queue&hot=bench:0002"])
def test_bad_shard_options_are_configuration_errors(query: str) -> None:
    with pytest.raises(ConfigurationError, match="HEXQ_BACKEND"):
        parse("redis://127.0.0.1:6379/0?" + query)


def test_a_sharded_url_opens_the_sharded_backend_and_the_plain_class_refuses_it() -> None:
    with pytest.raises(ConfigurationError, match="from_url"):
        RedisBackend.from_url("redis://127.0.0.1:6379/0?shards=per-queue")
    assert isinstance(from_url("redis://127.0.0.1:6379/0?shards=per-queue&hot=bench:3"), ShardedRedisBackend)
    assert isinstance(from_url("redis://127.0.0.1:6379/0"), RedisBackend)

"""`hexq bench --queues Q / --shards N` (functions/bench/spread.py): the queue names, the URL the bench builds,
and the drain spread over several queues end to end (the report's shape and counts, never its timings)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from hexq.core.errors import ConfigurationError
from hexq.functions.bench.options import BenchOptions
from hexq.functions.bench.spread import (
    RoundRobin,
    partition_of,
    shares,
    spread_queue,
    spread_queues,
    spread_url,
    uneven_shards,
)
from hexq.functions.cli import main

SMALL = ["--count", "150", "--concurrency", "20", "--timeout", "60", "--skip", "client,http,latency,serve,baselines"]


def slot(partition: str, queue: str) -> int:
    return key_slot(f"{{{partition}/{queue}}}".encode())


@pytest.mark.parametrize("partition", ["hexq", "tenant-a"])
@pytest.mark.parametrize("q", [1, 2, 3, 6, 16])
def test_each_queue_is_the_first_name_whose_slot_is_in_the_middle_half_of_its_range(partition: str, q: int) -> None:
    width = REDIS_CLUSTER_HASH_SLOTS / q
    names = spread_queues(partition, q)
    assert len(names) == q
    for i, name in enumerate(names):
        stem, _, j = name.rpartition(".")
        assert stem == f"bench-{i}" and j.isdigit()

        def inside(n: str, i: int = i) -> bool:
            return i * width + width / 4 <= slot(partition, n) < (i + 1) * width - width / 4

        assert inside(name)
        assert not any(inside(f"{stem}.{k}") for k in range(int(j)))  # the smallest such j
    # One per master of a Q-master cluster as redis-cli deals the slots (3 masters: 0-5460, 5461-10922, ...).
    assert [slot("hexq", n) * 3 // REDIS_CLUSTER_HASH_SLOTS for n in spread_queues("hexq", 3)] == [0, 1, 2]
    assert spread_queue(partition, 0, q) == names[0]  # deterministic: every run and process agrees


def test_partition_comes_from_the_url() -> None:
    assert partition_of("redis+cluster://h:1,h:2?partition=acme&socket_timeout=3") == "acme"
    assert partition_of("redis://127.0.0.1:6379/0") == "hexq"
    assert partition_of("sqlite:///x.db") == "hexq"


def test_queues_append_shards_per_queue_to_a_cluster_url_only() -> None:
    cluster = "redis+cluster://127.0.0.1:7000,127.0.0.1:7001?partition=p"
    url, notes = spread_url(cluster, 3, 1)
    assert url == f"{cluster}&shards=per-queue"
    assert notes == ["--queues 3: appended shards=per-queue to the backend URL"]
    assert spread_url("redis+cluster://127.0.0.1:7000", 3, 1)[0] == "redis+cluster://127.0.0.1:7000?shards=per-queue"
    assert spread_url(f"{cluster}&shards=per-queue", 3, 1) == (f"{cluster}&shards=per-queue", [])
    for untouched in ("redis://127.0.0.1:6379/0", "sqlite:///x.db", "memory://"):  # one server: nothing to spread
        assert spread_url(untouched, 3, 1) == (untouched, [])
    assert spread_url(cluster, 1, 1) == (cluster, [])  # the default changes nothing


def test_shards_append_a_hot_queue_to_a_redis_url() -> None:
    url, notes = spread_url("redis://:pw@127.0.0.1:6379/0", 1, 4)
    assert url == "redis://:pw@127.0.0.1:6379/0?shards=per-queue&hot=bench:4"
    assert notes == ["--shards 4: appended shards=per-queue&hot=bench:4 to the backend URL"]
    assert spread_url("redis+cluster://h:1?shards=per-queue", 1, 2)[0] == "redis+cluster://h:1?shards=per-queue&hot=bench:2"
    with pytest.raises(ConfigurationError, match="already has hot="):
        spread_url("redis+cluster://h:1?shards=per-queue&hot=emails:4", 1, 2)
    for other in ("sqlite:///x.db", "memory://"):
        with pytest.raises(ConfigurationError, match="--shards needs a Redis backend"):
            spread_url(other, 1, 2)


def test_options_refuse_what_the_spread_cannot_do() -> None:
    with pytest.raises(ConfigurationError, match="--queues takes 1 to 64"):
        BenchOptions(queues=0)
    with pytest.raises(ConfigurationError, match="--shards takes 1 to 64"):
        BenchOptions(shards=65)
    with pytest.raises(ConfigurationError, match="give one of them"):
        BenchOptions(queues=2, shards=2)


@pytest.mark.parametrize(("argv", "message"), [
    (["--backend", "memory://", "--shards", "2"], "--shards needs a Redis backend"),
    (["--shards", "2"], "--shards needs a Redis backend"),  # the temporary SQLite file
    (["--backend", "memory://", "--queues", "0"], "--queues takes"),
    (["--backend", "memory://", "--queues", "three"], "invalid int value"),
])
def test_bad_spread_options_are_usage_errors(capsys: pytest.CaptureFixture[str], argv: list[str],
                                             message: str) -> None:
    assert main(["bench", *SMALL, *argv]) == 2
    assert message in capsys.readouterr().err


def test_round_robin_goes_on_where_the_last_batch_stopped() -> None:
    turns = RoundRobin(["a", "b", "c"], most=4)
    assert [turns.take(4), turns.take(4), turns.take(1)] == [["a", "b", "c", "a"], ["b", "c", "a", "b"], ["c"]]
    one = RoundRobin(["x"], most=1000)
    assert one.take(1000) == ["x"] * 1000 and one.take(3) == ["x"] * 3
    assert shares(10, 3) == [4, 3, 3] and shares(2, 3) == [1, 1, 0] and sum(shares(1000, 7)) == 1000


def test_shards_warn_when_the_bulk_requests_cannot_load_them_evenly() -> None:
    assert uneven_shards(BenchOptions(count=30000, shards=3)) == []  # 30 requests of 1000
    assert "give -n a multiple of 3000" in uneven_shards(BenchOptions(count=10000, shards=3))[0]
    assert uneven_shards(BenchOptions(count=10000)) == []


# -- end to end: workers serve every queue, the tasks are split evenly, the report says so ---------------------
def bench(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    code = main(["bench", *SMALL, "--json", *argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    report: dict[str, Any] = json.loads(out)
    return report


def succeeded_by_queue(capsys: pytest.CaptureFixture[str], url: str, queues: list[str]) -> list[int]:
    counts = []
    for queue in queues:
        assert main(["list", "--backend", url, "--queue", queue, "--status", "succeeded", "--limit", "500",
                     "--json"]) == 0
        counts.append(len(json.loads(capsys.readouterr().out)["tasks"]))
    return counts


def check_spread(report: dict[str, Any], names: tuple[str, ...], rows: int) -> None:
    assert report["complete"] is True and report["config"]["queues"] == 3 and report["config"]["shards"] == 1
    assert report["drain_queues"] == list(names)
    assert [d["drained"] for d in report["drain"]] == [150] * rows


@pytest.mark.slow
def test_sqlite_drains_three_queues_round_robin(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/bench.db"
    report = bench(capsys, "--backend", url, "--queues", "3", "--workers", "1,2")
    names = spread_queues("hexq", 3)
    check_spread(report, names, rows=2)
    assert report["backend"] == url and report["notes"] == []
    # Two drain rows of 150 over the same 3 queues, each row split 50/50/50: the bulk phase's and the top-ups'.
    assert succeeded_by_queue(capsys, url, list(names)) == [100, 100, 100]
    assert main(["bench", *SMALL, "--backend", url, "--queues", "3"]) == 0  # the table names the queues
    assert f"round robin over 3 queues (--queues): {', '.join(names)}" in capsys.readouterr().out


@pytest.mark.slow
def test_memory_workers_in_process_serve_every_queue(capsys: pytest.CaptureFixture[str]) -> None:
    check_spread(bench(capsys, "--backend", "memory://", "--queues", "3", "--workers", "2"), spread_queues("hexq", 3),
                 rows=1)


@pytest.mark.slow
def test_the_default_keeps_each_drain_on_its_own_queue(capsys: pytest.CaptureFixture[str]) -> None:
    report = bench(capsys, "--backend", "memory://")
    assert report["drain_queues"] == [] and (report["config"]["queues"], report["config"]["shards"]) == (1, 1)


@pytest.mark.slow
@pytest.mark.redis
def test_one_redis_server_takes_three_queues_with_its_url_untouched(capsys: pytest.CaptureFixture[str],
                                                                    redis_url: str) -> None:
    report = bench(capsys, "--backend", redis_url, "--queues", "3", "--workers", "2")
    names = spread_queues(partition_of(redis_url), 3)
    check_spread(report, names, rows=1)
    assert "shards=" not in report["backend"] and report["notes"] == []
    assert report["drain"][0]["redis"]["calls_per_task"] > 0 and "redis_masters" not in report["drain"][0]
    assert succeeded_by_queue(capsys, redis_url, list(names))[0] >= 50  # also earlier runs' (the server is shared)


@pytest.mark.slow
@pytest.mark.redis
def test_a_cluster_drain_shows_each_masters_cpu(capsys: pytest.CaptureFixture[str], redis_cluster_url: str) -> None:
    report = bench(capsys, "--backend", redis_cluster_url, "--workers", "1")
    masters = report["drain"][0]["redis_masters"]
    assert len(masters) == 3 and report["machine"]["redis_masters"] == 3 and report["machine"]["redis_pid"] is None
    assert all(isinstance(m["node"], str) and m["cpu_seconds"] >= 0 for m in masters)
    assert "redis_masters_max_over_min" in report["drain"][0]


@pytest.mark.slow
@pytest.mark.redis
def test_a_cluster_spreads_a_hot_queue_over_its_shards(capsys: pytest.CaptureFixture[str],
                                                      redis_cluster_url: str) -> None:
    report = bench(capsys, "--backend", redis_cluster_url, "--shards", "3", "--workers", "2")
    assert report["complete"] is True and (report["config"]["queues"], report["config"]["shards"]) == (1, 3)
    assert report["backend"].endswith("?shards=per-queue&hot=bench:3") and report["drain_queues"] == ["bench"]
    assert report["notes"][0] == "--shards 3: appended shards=per-queue&hot=bench:3 to the backend URL"
    assert "not loaded evenly" in report["notes"][1]  # 150 tasks: one bulk request, so one shard
    assert report["drain"][0]["drained"] == 150 and len(report["drain"][0]["redis_masters"]) == 3


@pytest.mark.slow
@pytest.mark.redis
def test_a_cluster_spreads_three_queues_with_shards_per_queue(capsys: pytest.CaptureFixture[str],
                                                              redis_cluster_url: str) -> None:
    report = bench(capsys, "--backend", redis_cluster_url, "--queues", "3", "--workers", "3")
    check_spread(report, spread_queues("hexq", 3), rows=1)
    assert report["backend"].endswith("?shards=per-queue")
    assert report["notes"] == ["--queues 3: appended shards=per-queue to the backend URL"]
    assert len(report["drain"][0]["redis_masters"]) == 3


def test_a_refused_option_the_bench_appended_is_blamed_on_the_bench(capsys: pytest.CaptureFixture[str]) -> None:
    # shards= is the user's (and wrong), hot= the bench's: the adapter refuses before connecting anywhere
    assert main(["bench", *SMALL, "--backend", "redis://127.0.0.1:1/0?shards=bogus", "--shards", "2"]) == 2
    err = capsys.readouterr().err
    assert "shards= takes 'per-queue'" in err and "(--shards 2: appended hot=bench:2 to the backend URL)" in err

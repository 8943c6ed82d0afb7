"""Issue 15 item 4, under load: the same drain on the 3-master cluster, first with every key under one tag, then
spread over three queues (`hexq bench --queues 3`, which appends `shards=per-queue`). Real worker processes, real
redis-server masters. The behaviour asserted is where the work goes — each master's share of the script calls,
read from its own INFO commandstats — and the figure printed is each master's Redis CPU (speed is reported, not
asserted)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from redis.cluster import RedisCluster
from redis_server import flushed, sync_client

from hexq.functions.cli import main

pytestmark = [pytest.mark.redis, pytest.mark.slow]
TASKS = 6000
ARGS = ["-n", str(TASKS), "--workers", "3", "--skip", "http,serve,baselines,client,latency", "--json"]


def script_calls(client: RedisCluster) -> dict[str, int]:
    """EVALSHA calls so far on each master (the cluster client runs every hexq script by EVALSHA)."""
    calls: dict[str, int] = {}
    for node in client.get_primaries():
        stats = client.info("commandstats", target_nodes=node)
        calls[node.name] = int(stats.get("cmdstat_evalsha", {}).get("calls", 0))
    return calls


def drain_on(url: str, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[dict[str, Any], dict[str, int]]:
    client = sync_client(url)
    assert isinstance(client, RedisCluster)
    try:
        before = script_calls(client)
        assert main(["bench", "--backend", url, *ARGS, *extra]) == 0
        report: dict[str, Any] = json.loads(capsys.readouterr().out)
        after = script_calls(client)
    finally:
        client.close()
    return report, {node: after[node] - before.get(node, 0) for node in after}


def test_three_queues_spread_the_drain_over_the_three_masters(redis_cluster_url: str,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    with flushed(redis_cluster_url):
        one, one_calls = drain_on(redis_cluster_url, capsys)
    with flushed(redis_cluster_url):
        spread, spread_calls = drain_on(redis_cluster_url, capsys, "--queues", "3")
    lines = []
    for name, report, calls in (("one tag", one, one_calls), ("--queues 3", spread, spread_calls)):
        drain = report["drain"][0]
        assert drain["drained"] == TASKS and report["complete"] is True
        cpu = {m["node"]: m["cpu_seconds"] for m in drain["redis_masters"]}
        lines.append(f"{name}: {drain['per_second']:,.0f} tasks/s; Redis CPU s per master "
                     f"{' / '.join(f'{cpu[n]:.3f}' for n in sorted(cpu))} (busiest/idlest "
                     f"{drain['redis_masters_max_over_min']}x); script calls per master "
                     f"{' / '.join(str(calls[n]) for n in sorted(calls))}")
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    # One tag: one master runs every script. Spread: each master runs a fair part of them (a third, give or take
    # the bulk requests' and the claims' split).
    assert sorted(one_calls.values())[:2] == [0, 0]
    total = sum(spread_calls.values())
    assert all(calls >= total / 6 for calls in spread_calls.values()), spread_calls
    assert spread["backend"].endswith("?shards=per-queue")

"""Redis's own accounting around a phase: INFO commandstats (µs spent in each command) and INFO cpu.

Commandstats also counts the commands a script runs (redis.call inside EVALSHA / FCALL), while the
script's own entry already includes their time. So a phase's figure adds up the top-level commands
only: every script family (eval*, fcall*) plus every other command that no hexq script names (read
from the .lua files beside the Redis adapter). When a phase ran no script at all (the baselines, or
a hexq that someday pipelines plain commands), every command counts. The per-command deltas are all
in the JSON, marked `counted` or not, so the split can be checked.

The bench's own reads are left out: INFO itself, and the stats calls it polls progress with, whose
cost is measured after the phase (a few calls between two snapshots) and subtracted per poll.
INFO cpu (used_cpu_user + used_cpu_sys of the main thread) is the server's whole CPU, network I/O
and parsing included, which commandstats does not see; it includes the bench's polls.

On Redis Cluster every figure is read from each master and summed, and the CPU is also kept per master:
how evenly a deployment spreads its load over the masters (issue 15, item 4) is the ratio of the busiest
master's CPU to the idlest one's.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any

SCRIPT_FAMILIES = frozenset({"eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro"})
_OWN = frozenset({"info"})  # the bench reading these very figures
_CALL = re.compile(r"""redis\.p?call\(\s*['"]([A-Za-z_|]+)['"]""")
_CALIBRATION = 5  # stats calls that price one progress poll

Counts = dict[str, tuple[float, float]]  # command -> (calls, usec)


@dataclass(frozen=True, slots=True)
class Snapshot:
    commands: Counts
    cpu: float  # main thread's user + system seconds (the whole process's on a Redis without the split)
    polls: int  # the bench's progress polls so far
    system: float = 0.0  # the system part of `cpu`: the kernel's share (network, wake-ups)
    nodes: tuple[tuple[str, float], ...] = ()  # a cluster's masters: (host:port, its main thread's cpu)


@cache
def script_commands() -> frozenset[str]:
    """Every command a hexq Lua script names (lower case, as commandstats spells it)."""
    folder = files("hexq.adapters.redis") / "scripts"
    names: set[str] = set()
    for entry in folder.iterdir():
        if entry.name.endswith(".lua"):
            names.update(name.lower() for name in _CALL.findall(entry.read_text(encoding="utf-8")))
    return frozenset(names)


class RedisStats:
    """Snapshots of one Redis server's accounting, over a client of its own."""

    def __init__(self, url: str) -> None:
        from hexq.adapters.redis.connection import connect, parse

        self._client = connect(parse(url))

    async def server(self) -> dict[str, Any]:
        """The version, and the pid of the one server (a cluster has one per master: none is given)."""
        infos = list((await self._info("server")).values())
        first = infos[0]
        figures = {"redis_version": first.get("redis_version"),
                   "redis_pid": first.get("process_id") if len(infos) == 1 else None}
        return figures if len(infos) == 1 else {**figures, "redis_masters": len(infos)}

    async def snapshot(self, polls: int) -> Snapshot:
        cpus, stats = await self._info("cpu"), await self._info("commandstats")
        commands: Counts = {}
        for node_stats in stats.values():
            for name, v in node_stats.items():
                if isinstance(v, Mapping):
                    calls, usec = commands.get(name.removeprefix("cmdstat_"), (0.0, 0.0))
                    commands[name.removeprefix("cmdstat_")] = (calls + float(v["calls"]), usec + float(v["usec"]))
        per_node = {node: _cpu(cpu) for node, cpu in cpus.items()}
        nodes = tuple(sorted((node, user + system) for node, (user, system) in per_node.items()))
        return Snapshot(commands, sum(u + s for u, s in per_node.values()), polls,
                        sum(s for _, s in per_node.values()), nodes if len(nodes) > 1 else ())

    async def _info(self, section: str) -> dict[str, Mapping[str, Any]]:
        """INFO `section` by node name: every master of a cluster (asked one by one, so each answer is one
        node's, whatever redis-py does to merge a fan-out), or the one server (named '')."""
        from redis.asyncio.cluster import RedisCluster

        if not isinstance(self._client, RedisCluster):
            return {"": await self._client.info(section)}
        await self._client.initialize()
        masters = self._client.get_primaries()
        answers = await asyncio.gather(*(self._client.info(section, target_nodes=node) for node in masters))
        return {node.name: answer for node, answer in zip(masters, answers, strict=True)}

    async def price_of_poll(self, poll: Callable[[], Awaitable[object]], polls: int) -> Counts:
        """What one progress poll costs in commandstats, from a few polls between two snapshots."""
        before = await self.snapshot(polls)
        for _ in range(_CALIBRATION):
            await poll()
        after = await self.snapshot(polls)
        return {name: (calls / _CALIBRATION, usec / _CALIBRATION) for name, (calls, usec) in
                _delta(before.commands, after.commands).items()}

    async def close(self) -> None:
        await self._client.aclose()


def _cpu(info: Mapping[str, Any]) -> tuple[float, float]:
    """(user, system) seconds of the main thread (of the whole process on a Redis without the split)."""
    user = info.get("used_cpu_user_main_thread", info.get("used_cpu_user", 0.0))
    system = info.get("used_cpu_sys_main_thread", info.get("used_cpu_sys", 0.0))
    return float(user), float(system)


def by_node(before: Snapshot, after: Snapshot) -> dict[str, Any]:
    """A cluster phase's CPU seconds per master and the busiest over the idlest ({} for one server)."""
    if not after.nodes:
        return {}
    was = dict(before.nodes)
    spent = {node: round(max(0.0, cpu - was.get(node, 0.0)), 4) for node, cpu in after.nodes}
    low = min(spent.values())
    return {"server_cpu_seconds_by_node": spent,
            "server_cpu_max_over_min": round(max(spent.values()) / low, 2) if low > 0 else None}


def usage(before: Snapshot, after: Snapshot, tasks: int, poll_price: Counts | None = None) -> dict[str, Any]:
    """The phase's Redis figures per task (see the module docstring for what counts)."""
    polls = after.polls - before.polls
    delta = _delta(before.commands, after.commands)
    for name, (calls, usec) in (poll_price or {}).items():
        if name in delta:
            delta[name] = (max(0.0, delta[name][0] - calls * polls), max(0.0, delta[name][1] - usec * polls))
    scripts_ran = any(delta.get(name, (0, 0))[0] > 0 for name in SCRIPT_FAMILIES)
    inner = script_commands() if scripts_ran else frozenset()
    counted = {name: name in SCRIPT_FAMILIES or name not in inner for name in delta}
    calls = sum(c for name, (c, _) in delta.items() if counted[name])
    usec = sum(u for name, (_, u) in delta.items() if counted[name])
    cpu = max(0.0, after.cpu - before.cpu)
    return {
        "commands_us_per_task": _per(usec, tasks), "calls_per_task": _per(calls, tasks, 3),
        "server_cpu_us_per_task": _per(cpu * 1e6, tasks), "server_cpu_seconds": round(cpu, 4),
        "server_cpu_system_seconds": round(max(0.0, after.system - before.system), 4),
        "bench_polls": polls,
        **by_node(before, after),
        "commands": {name: {"calls": round(c), "usec": round(u), "counted": counted[name]}
                     for name, (c, u) in sorted(delta.items(), key=lambda item: -item[1][1]) if c or u},
    }


def _delta(before: Counts, after: Counts) -> Counts:
    out: Counts = {}
    for name, (calls, usec) in after.items():
        if name in _OWN:
            continue
        was = before.get(name, (0.0, 0.0))
        if calls - was[0] > 0:
            out[name] = (calls - was[0], usec - was[1])
    return out


def _per(value: float, tasks: int, digits: int = 1) -> float | None:
    return round(value / tasks, digits) if tasks else None

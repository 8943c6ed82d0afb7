"""`hexq migrate copy`: move a Redis deployment to another Redis (one node to a cluster) without losing a task.
`hexq migrate status`: where a deployment's tasks are, shard by shard (has the legacy shard drained?).

Offline, by design: every hexq process is stopped first, so nothing writes while the keys move. The command
refuses while the source still has live workers or running leases (--force skips that check, for workers that
died without leaving), and whenever the target already holds a key of the partition. It copies every key of
the partition (`hexq:{<partition>}:*`: tasks, indexes, idempotency keys, schedules, pauses, breakers, rate
buckets) with DUMP and RESTORE, TTLs kept, then checks that the target's stats equal the source's. The source
is left as it was. All keys of a partition share one hash tag, so on a cluster they land in one slot.

Started with `?shards=per-queue` (adapters/redis/sharded.py) the target drains this copied partition in place, as
its legacy shard, while new tasks go to their queues' shards; without it the target serves it as the source did.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from hexq.core.errors import ConfigurationError, QueueError
from hexq.functions.settings import Settings

if TYPE_CHECKING:  # the driver is imported when a copy runs, not when the CLI builds its parser
    from hexq.adapters.redis import RedisBackend
    from hexq.adapters.redis.connection import Client, Target

BATCH = 500  # keys per DUMP round trip and per RESTORE round trip


class Refused(QueueError):
    """The copy would not be safe (writers still alive) or would overwrite something: nothing was copied."""


@dataclass(frozen=True, slots=True)
class Copied:
    partition: str
    keys: int
    seconds: float
    by_status: dict[str, int]
    queued: int


def add_arguments(p: argparse.ArgumentParser) -> None:
    add = p.add_subparsers(title="actions", metavar="ACTION", required=True).add_parser
    copy_ = add("copy", help="copy a stopped deployment's keys to another Redis and check them",
                description=__doc__.split("\n\n")[1] if __doc__ else None)
    copy_.add_argument("--from", dest="migrate_from", required=True, metavar="URL", help="redis://… it is on now")
    copy_.add_argument("--to", dest="migrate_to", required=True, metavar="URL",
                       help="redis://… or redis+cluster://… to move it to (same ?partition=)")
    copy_.add_argument("--force", action="store_true",
                       help="copy even if the source lists live workers or running leases (they must be gone)")
    copy_.add_argument("--json", dest="migrate_json", action="store_true", help="print JSON instead of a line")
    copy_.set_defaults(migrate_action="copy")
    status = add("status", help="where the tasks are: per shard (the legacy one first), by status",
                 description="Each shard of a deployment (the partition's own tag, 'legacy', then every shard the "
                             "registry lists) with its tasks by status. After a switch to shards=per-queue the "
                             "legacy shard has drained when it holds nothing queued, scheduled or running.")
    status.add_argument("--backend", dest="migrate_backend", metavar="URL", help="a redis URL (default: HEXQ_BACKEND)")
    status.add_argument("--json", dest="migrate_json", action="store_true", help="print JSON instead of a table")
    status.set_defaults(migrate_action="status")


def run_command(settings: Settings, args: argparse.Namespace) -> int:
    if args.migrate_action == "status":
        return _status(args.migrate_backend or settings.backend_url, json_out=args.migrate_json)
    try:
        copied = asyncio.run(copy(args.migrate_from, args.migrate_to, force=args.force))
    except Refused as exc:
        print(f"hexq: migrate: refused: {exc}", file=sys.stderr)
        return 1
    if args.migrate_json:
        print(json.dumps(asdict(copied), sort_keys=True))
    else:
        counts = ", ".join(f"{status} {n}" for status, n in copied.by_status.items() if n)
        print(f"copied {copied.keys} keys of partition {copied.partition!r} in {copied.seconds:.2f} s; "
              f"tasks: {counts or 'none'}; stats equal on both sides")
    return 0


async def copy(source_url: str, target_url: str, *, force: bool = False) -> Copied:
    """Copy the partition's keys from `source_url` to `target_url` and check them (the module docstring says how).
    Raises Refused (nothing copied), ConfigurationError for URLs it cannot use, BackendUnavailable, and QueueError
    when the copy's stats differ from the source's."""
    from hexq.adapters.redis import RedisBackend
    from hexq.adapters.redis.connection import connect
    from hexq.adapters.redis.keys import Keys

    source_at, target_at = _targets(source_url, target_url)
    source, target = RedisBackend(source_at), RedisBackend(target_at)
    reader, writer = connect(source_at, decode=False), connect(target_at, decode=False)
    pattern = Keys(source_at.partition).prefix + "*"  # partition characters are not glob characters
    try:
        if not force:
            await _quiet(source)
        if await _first_key(writer, pattern):
            raise Refused(f"the target already holds keys of partition {source_at.partition!r}")
        started = time.monotonic()
        keys = 0
        async for batch in _batches(reader, pattern):
            keys += await _move(reader, writer, batch)
        seconds = time.monotonic() - started
        before, after = await source.stats(), await target.stats()
        if (before.by_status, before.queued) != (after.by_status, after.queued):
            raise QueueError(f"the copy's stats differ: source {dict(before.by_status)}, "
                             f"target {dict(after.by_status)}")
        return Copied(source_at.partition, keys, round(seconds, 3),
                      {status.value: n for status, n in after.by_status.items()}, after.backlog)
    finally:
        for closing in (source.close(), target.close(), reader.aclose(), writer.aclose()):
            await closing


def _targets(source_url: str, target_url: str) -> tuple[Target, Target]:
    from hexq.adapters.redis.connection import parse

    source_at, target_at = parse(source_url), parse(target_url)
    if source_at.partition != target_at.partition:
        raise ConfigurationError(f"migrate copies one partition as it is: --from has {source_at.partition!r}, "
                                 f"--to {target_at.partition!r}")
    if source_at.sharding or target_at.sharding:
        raise ConfigurationError("migrate copies the partition's keys: give both URLs without shards= or hot=")
    return source_at, target_at


async def _quiet(source: RedisBackend) -> None:
    workers, leases = await source.workers(), await source.leases(1)
    if workers or leases:
        raise Refused(f"the source has {len(workers)} live worker(s) and {'some' if leases else 'no'} running "
                      "lease(s): stop every hexq process first (or --force if they are gone for good)")


async def _first_key(client: Client, pattern: str) -> bool:
    from hexq.adapters.redis.connection import translated

    with translated():
        async for _ in client.scan_iter(match=pattern, count=1000):
            return True
    return False


async def _batches(client: Client, pattern: str) -> AsyncIterator[list[bytes]]:
    from hexq.adapters.redis.connection import translated

    batch: list[bytes] = []
    with translated():
        async for key in client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= BATCH:
                yield batch
                batch = []
    if batch:
        yield batch


async def _move(reader: Client, writer: Client, keys: list[bytes]) -> int:
    """DUMP + PTTL of `keys` in one round trip, RESTORE of those still there in another; how many were written."""
    from hexq.adapters.redis.connection import translated

    with translated():
        async with reader.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.dump(key)
                pipe.pttl(key)
            replies: list[Any] = await pipe.execute()
        restores = [(key, value, ttl) for key, value, ttl in zip(keys, replies[::2], replies[1::2], strict=True)
                    if value is not None and ttl != -2]  # gone between the SCAN and the DUMP (a watch key's TTL)
        async with writer.pipeline(transaction=False) as pipe:
            for key, value, ttl in restores:
                pipe.restore(key, max(int(ttl), 0), value)  # PTTL -1 (no expiry) is RESTORE's 0
            await pipe.execute()
    return len(restores)


WAITING = ("queued", "scheduled", "running")


def _status(url: str, *, json_out: bool) -> int:
    rows = asyncio.run(shard_status(url))
    if json_out:
        print(json.dumps(rows, sort_keys=True))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    for header in ("shard", "queues", *WAITING, "succeeded", "dead"):
        table.add_column(header, justify="left" if header in ("shard", "queues") else "right", no_wrap=True)
    for row in rows:
        counts = row["by_status"]
        table.add_row(row["shard"], ",".join(row["queues"]), *(str(counts.get(s, 0)) for s in WAITING),
                      str(counts.get("succeeded", 0)), str(counts.get("dead", 0)))
    Console(highlight=False, markup=False, emoji=False).print(table)
    drained = not any(rows[0]["by_status"].get(status) for status in WAITING)
    print("legacy shard: " + ("drained (nothing queued, scheduled or running)" if drained
                              else "still holds tasks; sharded workers and pollers serve it"))
    return 0


async def shard_status(url: str) -> list[dict[str, Any]]:
    """Per shard: {"shard": code ('legacy' for the partition's own tag), "queues": [...], "by_status": {...}}.
    An unsharded URL has only the legacy shard. Raises ConfigurationError for a URL that is not Redis."""
    from hexq.adapters.redis import ShardedRedisBackend, from_url

    if not url.startswith(("redis://", "rediss://", "redis+cluster://")):
        raise ConfigurationError(f"migrate status reads a Redis deployment, not {url.split(':', 1)[0]}://")
    backend = from_url(url)
    try:
        if isinstance(backend, ShardedRedisBackend):
            parts = await backend.shard_stats()
        else:
            parts = [("", frozenset(), await backend.stats())]
        return [{"shard": code or "legacy", "queues": sorted(queues),
                 "by_status": {status.value: n for status, n in stats.by_status.items()}}
                for code, queues, stats in parts]
    finally:
        await backend.close()

"""Redis backend: `redis://`, `rediss://` (TLS) and `redis+cluster://` (Redis Cluster).

Design
------
Slots. Every key of a deployment lives under ONE hash tag, `hexq:{<partition>}:...` (partition
"hexq" unless the URL says `?partition=`), so every key hashes to one cluster slot and every
script is single-slot and atomic on Redis Cluster too; a cluster then serves the partition from one
master. `?shards=per-queue` (sharded.py, ShardedRedisBackend) gives each queue, or each of a hot
queue's n shards, its own tag `{<partition>/<code>}` with this same layout inside, and composes what
spans shards (claims over several queues, sweeps, stats, listings) outside the scripts, at the price
of the cross-queue atomicity that module's docstring lists.

Fair queues keep one ready set per queue: a task's score holds its turn (hexq.core.fairness),
given when it is first queued (_lib.lua next_turn), so the claim is the ZPOPMIN it was.

Keys (keys.py spells them; scripts/_lib.lua documents them with the task hash's fields):
    task:<id>        HASH  `data` (the task as JSON, written by the client, never re-encoded by Lua)
                           + status, attempts, queue, priority, type, tenant, seq, idem, fp, the times
                           the scripts stamp (created_at, run_at, finished_at) and the lease (token,
                           started_at, worker_id, cancel)
    all              ZSET  id -> seq        every task: newest-first listings and cursors
    ready:<queue>    ZSET  id -> (3 - priority) * 2^40 + turn: strict priority, then fair turns within a
                           level (hexq.core.fairness; a tenant alone is FIFO)
    turns:<queue>    ZSET  '<priority>' -> the level's clock, '<priority>|<tenant>' -> the tenant's last turn
    delayed          ZSET  id -> run_at (whole µs)   scheduled tasks, promoted by scripts that read TIME
    leases           ZSET  id -> expiry (whole µs)   running tasks; reclaim takes expiry <= now
    finished         ZSET  id -> finished_at (µs)   succeeded and cancelled tasks, for purge
    status:<s>       ZSET  id -> seq for scheduled, dead and cancelled: listings of the rarer statuses
    idem             HASH  json([tenant, key]) -> id   idempotency keys (user data stays in fields)
    seq, token       INCRBY counters: FIFO order / cursors, and fencing tokens
    queues           SET   queues that may hold ready tasks (stats)
    waiting          HASH  tenant -> its queued + scheduled tasks: the per-tenant cap, which the
                           enqueue script checks before it stores anything
    wake:<queue>     LIST  wake tokens for blocked claimers
    schedules        HASH  d:<name> -> schedule JSON, r:<name> -> "<next_run>|<last_run>"
    rate:<hash>      HASH  tokens, updated: a RateLimiter bucket; <hash> is 32 hex digits of the
                           SHA-256 of the bucket's name (caller data never spells a key)
How many tasks have each status is read off these sets (stats.lua), so no step keeps a counter.

Every multi-key operation is one script (scripts/*.lua): claim, settle, settle-and-claim, extend,
bulk enqueue, promotion and reclaim are each one round trip and atomic. A script touches a task's
hash once per task (twice for a claim: read, then lease) and writes every index change of a batch
as one command per key. Due times and lease expiries are compared with the server's TIME inside the
scripts, never a client clock. On one Redis >= 7 the scripts are a function library loaded once
(FCALL); on Redis 6.2, a cluster, or for a user who may not load functions, the same Lua runs by
EVALSHA (_lua.py says why).

Submits. Concurrent enqueues of one process made in one turn of the event loop share one script
call (submits.py); each request is answered on its own, so a refused one fails only its caller.

Blocking wait. Each move of a task to queued (enqueue, promotion, release, replay) pushes one token
per queue and call onto `wake:<queue>`. A claim that finds nothing BLPOPs the wake lists of its
queues on a separate connection until a token arrives, the wait ends, or the earliest scheduled task
is due, then runs the claim script again. A stale token only costs one empty claim; a task without a
token is still taken by the next claim, because the claim script always reads the ready sets; a
claim that leaves tasks behind keeps a token there for the next blocked claimer; and a claim that
finds a queue empty clears its wake list, so tokens do not pile up.

Fake time (tests only). `RedisBackend(..., test_clock=True)` makes the scripts read "now" from the
partition's `test:clock` key instead of TIME. The contract suite sets that key to FakeClock.now()
and its FakeClock moves the key on every advance(), so returned timestamps equal clock.now()
exactly, and several connections (or processes) share one fake server time.

Upgrading from hexq 0.1.0. Its task hashes, ready sets, idempotency keys and the rest read as they
are. Its delayed, leases and finished scores were seconds: a score below 10^12 is read as seconds and
rescored when a promotion, reclaim or purge reaches it. Its sorted sets of queued, running and
succeeded tasks are no longer kept: purge drops them. Stop every 0.1.0 process first: 0.1.0 cannot
read what this version writes.

Requires Redis >= 6.2 (ZRANGE ... BYSCORE REV LIMIT, fractional BLPOP timeouts); run it with
AOF everysec and maxmemory-policy noeviction (RELIABILITY.md D8).
"""

from __future__ import annotations

from collections.abc import Mapping

from hexq.adapters.redis.backend import RedisBackend
from hexq.adapters.redis.connection import parse
from hexq.adapters.redis.sharded import ShardedRedisBackend

__all__ = ["RedisBackend", "ShardedRedisBackend", "from_url"]


def from_url(url: str, *, test_clock: bool = False,
             weights: Mapping[str, int] | None = None) -> RedisBackend | ShardedRedisBackend:
    """The backend a Redis URL names: ShardedRedisBackend when it says `shards=` (sharded.py), else RedisBackend."""
    target = parse(url)
    if target.sharding is None:
        return RedisBackend(target, test_clock=test_clock, weights=weights)
    return ShardedRedisBackend(target, test_clock=test_clock, weights=weights)

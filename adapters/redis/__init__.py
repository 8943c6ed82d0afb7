"""Redis backend: `redis://`, `rediss://` (TLS) and `redis+cluster://` (Redis Cluster).

Design
------
Slots. Every key of a deployment lives under ONE hash tag, `hexq:{<partition>}:...` (partition
"hexq" unless the URL says `?partition=`), so every key hashes to one cluster slot and every
script is single-slot and atomic on Redis Cluster too. A `{queue}` tag per queue would spread load
across shards, but strict priority across a queue set, tenant-wide idempotency keys, global fencing
tokens, stats and listings all span queues and would lose their atomicity. Documented limitation:
one partition is served by one shard; deployments that outgrow it run several partitions (one
URL each). Splitting into per-queue tags is a later refinement.

Keys (keys.py spells them all; _lib.lua documents the block every script gets):
    task:<id>        HASH  the task's codec JSON ("data") + status, attempts, queue, priority, seq,
                           lease token and expiry, and the claim's started_at / worker_id
    status:<status>  ZSET  id -> seq        counts (ZCARD) and filtered listings per status
    ready:<queue>    ZSET  id -> (3 - priority) * 2^40 + seq: ZRANGE 0 0 is strict priority, FIFO
    delayed          ZSET  id -> run_at     scheduled tasks, promoted by scripts that read TIME
    leases           ZSET  id -> expiry     running tasks; reclaim takes expiry <= now
    finished         ZSET  id -> finished_at  succeeded and cancelled tasks, for purge
    all              ZSET  id -> seq        every task, newest-first listings and cursors
    idem             HASH  json([tenant, key]) -> id   idempotency keys (user data stays in fields)
    seq, token       INCR counters: FIFO order / cursors, and fencing tokens
    queues           SET   queues that may hold ready tasks (stats)
    waiting          HASH  tenant -> its queued + scheduled tasks: the per-tenant cap, which the
                           enqueue script checks before it stores anything
    wake:<queue>     LIST  wake tokens for blocked claimers
    schedules        HASH  d:<name> -> schedule JSON, r:<name> -> "<next_run>|<last_run>"
    rate:<hash>      HASH  tokens, updated: a RateLimiter bucket; <hash> is 32 hex digits of the
                           SHA-256 of the bucket's name (caller data never spells a key)

Every multi-key operation is one Lua script (scripts/*.lua), so claim, settle, extend, bulk
enqueue, promotion and reclaim are each one round trip and atomic. Due times and lease expiries
are compared with the server's TIME inside the scripts, never a client clock.

Blocking wait. Each move of a task to queued (enqueue, promotion, release, replay) LPUSHes a token
onto `wake:<queue>` (capped). A claim that finds nothing BLPOPs the wake lists of its queues on a
separate connection until a token arrives, the wait ends, or the earliest scheduled task is due,
then runs the claim script again. A stale token only costs one empty claim; a task without a token
is still taken by the next claim, because the claim script always reads the ready sets; and the
claim script clears the wake list of a queue it finds empty, so tokens do not pile up.

Fake time (tests only). `RedisBackend(..., test_clock=True)` makes the scripts read "now" from the
partition's `test:clock` key instead of TIME. The contract suite sets that key to FakeClock.now()
and its FakeClock moves the key on every advance(), so returned timestamps equal clock.now()
exactly, and several connections (or processes) share one fake server time.

Requires Redis >= 6.2 (ZRANGE ... BYSCORE REV LIMIT, fractional BLPOP timeouts); run it with
AOF everysec and maxmemory-policy noeviction (RELIABILITY.md D8).
"""

from __future__ import annotations

from hexq.adapters.redis.backend import RedisBackend

__all__ = ["RedisBackend"]

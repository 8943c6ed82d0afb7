"""Shards: where a task lives when a deployment spreads over a Redis Cluster (`?shards=per-queue`).

Not wired into RedisBackend yet (it refuses a sharded URL): this is the first step of issue #15 item 4,
and docs/redis-cluster-sharding.md (the design) says what comes next. Without the option nothing here is used.

A shard is the unit of placement. Each has a code, and its keys live under the hash tag `{<partition>/<code>}`
(keys.Keys(partition, shard=code)), so each shard is one cluster slot that any master can own. The legacy tag
`{<partition>}` (every key of an unsharded deployment) stays as the global slot and as the shard of the tasks
stored before sharding was turned on.

- Every queue is its own shard, coded by its name (or a hash of a long name).
- A hot queue (`&hot=<queue>:<n>`) is split into n shards whose tags are spread evenly over the 16384 slots,
  so n = a multiple of the master count puts as many of them on each master (the slot ranges that
  `redis-cli --cluster create` gives).
- A task id names its shard: `<32 hex digits>.<code>`, so `get(id)` needs no lookup. An id without one (every id
  minted before sharding) names the legacy shard.
"""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from dataclasses import dataclass, field
from typing import Final

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from hexq.adapters.redis.keys import DEFAULT_PARTITION, Keys, check_part
from hexq.core.errors import ConfigurationError, ValidationError

PER_QUEUE: Final = "per-queue"  # the only `shards=` mode so far
MAX_HOT_SHARDS: Final = 64
_SHORT: Final = 20  # a queue name up to this long is its own code; a longer one is hashed
_HEX_ID: Final = re.compile(r"[0-9a-f]{32}")
_MAX_TRIES: Final = 1_000_000  # never reached: half of 1/64 of the slots is hit in ~128 tries


def queue_code(queue: str) -> str:
    """The shard code of a queue: its name when short, else `h` + 12 hex digits of its SHA-256 (13 characters).
    Codes are kept short so that an id `<32 hex>.<code>` of a hot shard stays a key part (64 characters)."""
    check_part(queue, "queue")
    if len(queue) <= _SHORT:
        return queue
    return "h" + hashlib.sha256(queue.encode()).hexdigest()[:12]


def hot_codes(partition: str, queue: str, n: int) -> tuple[str, ...]:
    """The codes of a hot queue's n shards: shard k is `<queue_code>-<k>.<j>`, with j the smallest number
    whose tag hashes into the middle of the k-th of n equal slot ranges. Deterministic, so every process
    agrees without asking the cluster (which may be resharded later: the codes must not depend on it)."""
    if not 2 <= n <= MAX_HOT_SHARDS:
        raise ValidationError(f"a hot queue has 2 to {MAX_HOT_SHARDS} shards, not {n}", field="hot")
    base = queue_code(queue)
    return tuple(_code_in_range(partition, f"{base}-{k}", k, n) for k in range(n))


def _code_in_range(partition: str, stem: str, k: int, n: int) -> str:
    # The middle half of the k-th range: how an allocator rounds the ranges' ends (redis-cli gives 3 masters
    # 0-5460, 5461-10922, 10923-16383) cannot move a shard to its neighbour's master.
    width = REDIS_CLUSTER_HASH_SLOTS / n
    low, high = k * width + width / 4, (k + 1) * width - width / 4
    for j in range(_MAX_TRIES):
        code = f"{stem}.{j}"
        if low <= key_slot(Keys(partition, code).tag.encode()) < high:
            return code
    raise AssertionError(f"no code for slots [{low}, {high})")  # pragma: no cover - CRC16 is uniform


def shard_of_id(task_id: str) -> str | None:
    """The shard code a task id names, or None for an id of the legacy shard (no code)."""
    if len(task_id) > 33 and task_id[32] == "." and _HEX_ID.fullmatch(task_id, 0, 32):
        return task_id[33:]
    return None


def task_id(random_part: str, code: str) -> str:
    """The id of a task stored in shard `code`: `random_part` (32 hex digits, core.model.new_task_id) + `.code`."""
    if not _HEX_ID.fullmatch(random_part):
        raise ValidationError(f"a task id's random part is 32 lower-case hex digits, not {random_part!r}")
    return check_part(f"{random_part}.{code}", "task id")


@dataclass(frozen=True, slots=True)
class Sharding:
    """What the URL asked for: every queue its own shard (`shards=per-queue`), and the hot queues split further
    (`hot=<queue>:<n>,...`), as (queue, n) pairs in the URL's order."""

    hot: tuple[tuple[str, int], ...] = ()

    def layout(self, partition: str) -> ShardLayout:
        return ShardLayout(partition, dict(self.hot))


@dataclass(slots=True)
class ShardLayout:
    """Which shard a queue's tasks go to. `hot`: queue -> its number of shards."""

    partition: str = DEFAULT_PARTITION
    hot: dict[str, int] = field(default_factory=dict)
    _codes: dict[str, tuple[str, ...]] = field(default_factory=dict, repr=False)
    _turn: int = field(default=0, repr=False)

    def shards(self, queue: str) -> tuple[str, ...]:
        """Every shard code of `queue` by this configuration (one, or a hot queue's n)."""
        codes = self._codes.get(queue)
        if codes is None:
            n = self.hot.get(queue, 1)
            codes = hot_codes(self.partition, queue, n) if n > 1 else (queue_code(queue),)
            self._codes[queue] = codes
        return codes

    def route(self, queue: str, tenant: str, idempotency_key: str | None) -> str:
        """The shard a new task goes to. A keyed task of a hot queue goes by its (tenant, key), so one request
        always meets its earlier copy in one shard's idempotency hash; other tasks of a hot queue go round
        robin, one step per call (callers route a whole request with one call's turn: see next_turn)."""
        codes = self.shards(queue)
        if len(codes) == 1:
            return codes[0]
        if idempotency_key is not None:
            pair = json.dumps([tenant, idempotency_key], separators=(",", ":")).encode("utf-8", "surrogatepass")
            return codes[zlib.crc32(pair) % len(codes)]
        return codes[self._turn % len(codes)]

    def next_turn(self) -> None:
        """Move the round robin of unkeyed hot-queue tasks on: once per request, so one request stays in one shard."""
        self._turn += 1


def parse_options(shards: str | None, hot: str | None) -> Sharding | None:
    """What the URL options `shards=` and `hot=` ask for; None when neither is given (the legacy layout).
    Raises ConfigurationError for anything else."""
    if shards is None and hot is None:
        return None
    if shards != PER_QUEUE:
        raise ConfigurationError(f"shards= takes {PER_QUEUE!r} (and hot= needs it), not {shards!r}")
    return Sharding(tuple(_hot(hot or "").items()))


def _hot(raw: str) -> dict[str, int]:
    hot: dict[str, int] = {}
    for item in filter(None, raw.split(",")):
        queue, _, count = item.rpartition(":")  # a queue name may hold ':' itself; the count is last
        n = int(count) if count.isascii() and count.isdigit() and len(count) <= 3 else 0
        try:
            check_part(queue, "queue")
        except ValidationError as exc:
            raise ConfigurationError(f"hot= takes <queue>:<shards>[,...], got {item!r}: {exc}") from exc
        if not 2 <= n <= MAX_HOT_SHARDS:
            raise ConfigurationError(f"hot= gives a queue 2 to {MAX_HOT_SHARDS} shards, got {item!r}")
        if queue in hot:
            raise ConfigurationError(f"hot= names queue {queue!r} twice")
        hot[queue] = n
    return hot

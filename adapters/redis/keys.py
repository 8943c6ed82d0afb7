"""The Redis key schema: the only place that spells hexq's key names.

Every key of a partition starts with `hexq:{<partition>}:`, so all of them hash to the one
cluster slot of the tag `{<partition>}` and every script touches one slot. Key parts (partition,
queue, task id, status) must match `[A-Za-z0-9_.:-]{1,64}`; user data (tenants, idempotency keys,
schedule names, worker ids, payloads) only ever appears in hash fields, values and ARGV.
The Lua scripts get the partition's prefix (KEYS[1]) from here and append the same names.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

from hexq.core.errors import ValidationError

PART = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
DEFAULT_PARTITION = "hexq"


def is_part(value: object) -> bool:
    return isinstance(value, str) and PART.fullmatch(value) is not None


def check_part(value: object, what: str) -> str:
    """`value` if it may be spelled into a key name; ValidationError naming `what` otherwise."""
    if not is_part(value):
        raise ValidationError(f"{what} must match {PART.pattern}, got {value!r}", field=what)
    return value  # type: ignore[return-value]  # is_part checked it is a str


@dataclass(frozen=True, slots=True)
class Keys:
    """The keys of one partition: one hash tag, so one slot (see hexq.adapters.redis for why).

    `shard`: a shard's code (adapters/redis/shards.py) when the deployment is sharded: the same names under the
    tag `{<partition>/<shard>}`, another slot. None (the default) is the partition's own tag, the only layout
    before sharding, and the global slot of a sharded deployment. `/` is not a key-part character, so no
    shard's tag can equal a partition's."""

    partition: str = DEFAULT_PARTITION
    shard: str | None = None

    def __post_init__(self) -> None:
        check_part(self.partition, "partition")
        if self.shard is not None:
            check_part(self.shard, "shard")

    def _key(self, name: str) -> str:
        return f"hexq:{self.tag}:{name}"

    @property
    def tag(self) -> str:
        return f"{{{self.partition}}}" if self.shard is None else f"{{{self.partition}/{self.shard}}}"

    @property
    def prefix(self) -> str:
        """KEYS[1] of every task script: the scripts append the names below (and _lib.lua lists them)."""
        return self._key("")

    @property
    def test_clock(self) -> str:
        return self._key("test:clock")

    @property
    def waiting(self) -> str:
        """HASH tenant -> that tenant's queued + scheduled tasks (the scripts keep it)."""
        return self._key("waiting")

    @property
    def depth(self) -> str:
        """HASH '<state>|<priority>|<queue>' -> the scheduled and dead tasks there (the scripts keep it)."""
        return self._key("depth")

    @property
    def paused(self) -> str:
        """SET of the paused queues' names (QueueControl): the claim scripts read it once per call."""
        return self._key("paused")

    @property
    def idem(self) -> str:
        """HASH idempotency_field(tenant, key) -> task id (the enqueue script keeps it)."""
        return self._key("idem")

    @property
    def delayed(self) -> str:
        """ZSET id -> run_at (whole µs): scheduled tasks (a sharded claim peeks at its first)."""
        return self._key("delayed")

    @property
    def shards(self) -> str:
        """HASH '<shard code> <queue>' -> '1': the shards a sharded deployment has stored tasks in, and for which
        queue (global slot only; sharded.py), so sweeps, stats and listings find shards their process is not
        configured for."""
        return self._key("shards")

    @property
    def workers(self) -> str:
        """HASH worker id -> its registration; `workers:alive` ZSET worker id -> when its next beat is due."""
        return self._key("workers")

    # -- single keys the client reads or blocks on directly -------------------------------------
    def task(self, task_id: str) -> str:
        return self._key("task:" + check_part(task_id, "task id"))

    def watch(self, task_id: str) -> str:
        """Set (with a TTL) while a client waits for the task to finish: settling scripts then push to done()."""
        return self.task(task_id) + ":watch"

    def done(self, task_id: str) -> str:
        """A LIST a waiting client BLPOPs; the script that finishes a watched task pushes to it (TTL 60 s)."""
        return self.task(task_id) + ":done"

    def status(self, status: str) -> str:
        return self._key("status:" + check_part(status, "status"))

    def ready(self, queue: str) -> str:
        return self._key("ready:" + check_part(queue, "queue"))

    def turns(self, queue: str) -> str:
        """ZSET of fair queues: '<priority>' -> the level's clock, '<priority>|<tenant>' -> the tenant's last turn."""
        return self._key("turns:" + check_part(queue, "queue"))

    def wake(self, queue: str) -> str:
        return self._key("wake:" + check_part(queue, "queue"))

    @property
    def schedules(self) -> str:
        return self._key("schedules")

    @property
    def breakers(self) -> str:
        """HASH breaker name -> '<version> <state JSON>' (the BreakerStore; scripts/breaker_put.lua)."""
        return self._key("breakers")

    def rate_bucket(self, name: str) -> str:
        """A RateLimiter bucket. Bucket names are caller data, so the key holds a hash of the name, never
        the name: any string is safe, and every bucket key has the same short shape."""
        return self._key("rate:" + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:32])


# -- hash fields (user data is fine here: fields are not key names) ------------------------------
def idempotency_field(tenant: str, key: str | None) -> str:
    """The field of the `idem` hash for (tenant, key); '' when the task has no key.
    JSON keeps the pair unambiguous whatever characters the two strings hold."""
    return "" if key is None else json.dumps([tenant, key], separators=(",", ":"))


def schedule_fields(name: str) -> tuple[str, str]:
    """Fields of the `schedules` hash: the schedule's JSON, and its "<next_run>|<last_run>"."""
    return f"d:{name}", f"r:{name}"

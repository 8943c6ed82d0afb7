"""`--queues Q` and `--shards N`: the drain spread over a Redis Cluster's masters (issue 15, item 4).

With `--queues Q` (Q > 1) the bulk and drain phases submit round robin over Q queues and every drain worker serves
all of them. Queue i is `bench-<i>.<j>`, j the smallest number whose shard tag `{<partition>/bench-<i>.<j>}`
hashes into the middle half of the i-th of Q equal slot ranges: `redis-cli --cluster create` gives each master
one equal contiguous range, so Q = the master count puts one queue on each master, however the ends are rounded.
The names depend only on (partition, Q), not on the cluster, so every run with the same Q uses the same queues.

With `--shards N` (N > 1) they use one hot queue, `bench`, which the backend splits in N shards (`hot=bench:N`).

Both need a sharded Redis (`shards=per-queue`). What is appended to the backend URL, and why, is decided here
by pure functions, tested without any backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final, Generic, TypeVar
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from hexq.adapters.redis.keys import DEFAULT_PARTITION, Keys
from hexq.adapters.redis.shards import MAX_HOT_SHARDS, PER_QUEUE, queue_code
from hexq.core.errors import ConfigurationError

if TYPE_CHECKING:
    from hexq.functions.bench.options import BenchOptions  # options imports this module

HOT_QUEUE: Final = "bench"
MAX_QUEUES: Final = 64  # like hot shards: enough for any cluster this bench will meet
_REDIS: Final = ("redis", "rediss", "redis+cluster")
_MAX_TRIES: Final = 1_000_000  # never reached: a range's middle half is 1/(2Q) of the slots
T = TypeVar("T")


def spread_queue(partition: str, i: int, q: int) -> str:
    """The i-th of q bench queues: `bench-<i>.<j>`, j the smallest number ≥ 0 whose shard tag falls in the middle
    half of the i-th of q equal slot ranges (the middle, so no rounding of a range's ends moves it to a neighbour)."""
    if not 0 <= i < q:
        raise ValueError(f"queue {i} of {q}")
    width = REDIS_CLUSTER_HASH_SLOTS / q
    low, high = i * width + width / 4, (i + 1) * width - width / 4
    for j in range(_MAX_TRIES):
        name = f"{HOT_QUEUE}-{i}.{j}"
        # queue_code: the shard a sharded backend gives the queue (the name itself, as these are short)
        if low <= key_slot(Keys(partition, shard=queue_code(name)).tag.encode()) < high:
            return name
    raise AssertionError(f"no queue for slots [{low}, {high})")  # pragma: no cover - CRC16 is uniform


def spread_queues(partition: str, q: int) -> tuple[str, ...]:
    return tuple(spread_queue(partition, i, q) for i in range(q))


def partition_of(url: str) -> str:
    """The URL's `partition=` (Redis's key namespace), or the default; other backends ignore it."""
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True)).get("partition", DEFAULT_PARTITION)


def spread_url(url: str, queues: int, shards: int) -> tuple[str, list[str]]:
    """The backend URL for `--queues`/`--shards`, and notes saying what was appended. Raises ConfigurationError
    for what cannot run: --shards on a backend other than Redis, or a URL whose own `hot=` would be overridden.

    - `--shards N`: `hot=bench:N`, and `shards=per-queue` unless the URL has `shards=` (hot= needs it).
    - `--queues Q` on `redis+cluster://` without `shards=`: `shards=per-queue`, so each queue gets its own slot.
      On one server (`redis://`) the URL is left alone: there is one server to spread over, whatever the layout.
    - Anything else (Q = N = 1, SQLite, memory): the URL as given.
    """
    parts = urlsplit(url)
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    added: list[tuple[str, str]] = []
    if shards > 1:
        if parts.scheme not in _REDIS:
            raise ConfigurationError(f"bench: --shards needs a Redis backend (redis://, redis+cluster://), "
                                     f"not {parts.scheme}://")
        if "hot" in options:
            raise ConfigurationError(f"bench: --shards {shards} adds hot={HOT_QUEUE}:{shards} to the URL, which "
                                     f"already has hot=; leave one of them out")
        if "shards" not in options:
            added.append(("shards", PER_QUEUE))
        added.append(("hot", f"{HOT_QUEUE}:{shards}"))
    elif queues > 1 and parts.scheme == "redis+cluster" and "shards" not in options:
        added.append(("shards", PER_QUEUE))
    if not added:
        return url, []
    extra = "&".join(f"{name}={value}" for name, value in added)  # key-part characters: nothing to quote
    query = f"{parts.query}&{extra}" if parts.query else extra
    why = f"--shards {shards}" if shards > 1 else f"--queues {queues}"
    return urlunsplit(parts._replace(query=query)), [f"{why}: appended {extra} to the backend URL"]


def uneven_shards(options: BenchOptions) -> list[str]:
    """A note when --shards cannot be loaded evenly: a hot queue's shards take whole bulk requests in turn
    (shards.py, ShardLayout.route), so a drain's chunks must come in a multiple of N."""
    requests = -(-options.count // options.chunk)
    if options.shards < 2 or requests % options.shards == 0:
        return []
    return [f"--shards {options.shards}: each drain submits its {options.count} tasks in {requests} bulk requests, "
            f"which a hot queue's shards take whole, in turn, so they are not loaded evenly (give -n a multiple of "
            f"{options.chunk * options.shards})"]


def check(queues: int, shards: int) -> None:
    """What the two options allow, whatever the backend."""
    if not 1 <= queues <= MAX_QUEUES:
        raise ConfigurationError(f"bench: --queues takes 1 to {MAX_QUEUES}, not {queues}")
    if not 1 <= shards <= MAX_HOT_SHARDS:
        raise ConfigurationError(f"bench: --shards takes 1 to {MAX_HOT_SHARDS}, not {shards}")
    if queues > 1 and shards > 1:
        raise ConfigurationError("bench: --queues spreads over several queues, --shards splits one: give one of them")


class RoundRobin(Generic[T]):
    """Items (noop requests, one per queue) in turn, each batch going on where the last stopped, so N tasks split
    N // Q or one more per queue (shares) whatever the chunks. Batches are slices of one list built up front:
    with one queue this is the list of one request that the bulk phase always sliced."""

    def __init__(self, items: Sequence[T], most: int) -> None:
        self._q = len(items)
        self._items = list(items) * (most // self._q + 2)  # any start < Q plus `most` items fit
        self._next = 0

    def take(self, size: int) -> list[T]:
        start = self._next
        self._next = (start + size) % self._q
        return self._items[start:start + size]


def shares(n: int, q: int) -> list[int]:
    """How many of n tasks handed out round robin from the first of q queues each queue gets."""
    return [n // q + (1 if i < n % q else 0) for i in range(q)]

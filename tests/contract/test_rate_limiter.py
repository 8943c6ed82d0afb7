"""RateLimiter contract: a token bucket per key, on the backend's clock, for every backend."""

from __future__ import annotations

import asyncio

import pytest
import redis
from redis_server import LinkedClock, fresh_backend

from hexq.core.clock import FakeClock
from hexq.core.ports import Backend


async def drain(backend: Backend, key: str, rate: float, burst: int) -> list[float]:
    return [await backend.acquire(key, rate, burst) for _ in range(burst)]


async def test_a_new_bucket_allows_a_burst_then_refuses_with_the_time_to_wait(backend: Backend) -> None:
    assert await drain(backend, "k", 2.0, 3) == [0.0, 0.0, 0.0]

    wait = await backend.acquire("k", 2.0, 3)

    assert wait == pytest.approx(0.5)  # one token at 2 a second
    assert await backend.acquire("k", 2.0, 3) == pytest.approx(0.5)  # a refusal takes nothing


async def test_the_bucket_refills_with_time(backend: Backend, clock: FakeClock) -> None:
    await drain(backend, "k", 2.0, 3)
    wait = await backend.acquire("k", 2.0, 3)

    clock.advance(wait)
    assert await backend.acquire("k", 2.0, 3) == 0.0  # waiting the returned time is enough
    assert await backend.acquire("k", 2.0, 3) > 0

    clock.advance(0.25)
    assert await backend.acquire("k", 2.0, 3) == pytest.approx(0.25)  # half a token there: half the wait


async def test_a_tenth_of_a_second_near_the_epoch_is_a_tenth_of_a_second(backend: Backend, clock: FakeClock) -> None:
    # 1.7e9 + 0.1 - 1.7e9 is 0.0999999 in doubles: waiting the advertised time must still be enough.
    await backend.acquire("k", 10.0, 1)
    assert await backend.acquire("k", 10.0, 1) == pytest.approx(0.1)

    clock.advance(0.1)
    assert await backend.acquire("k", 10.0, 1) == 0.0


async def test_refill_stops_at_the_burst(backend: Backend, clock: FakeClock) -> None:
    await drain(backend, "k", 1.0, 2)
    clock.advance(3600)

    assert await drain(backend, "k", 1.0, 2) == [0.0, 0.0]
    assert await backend.acquire("k", 1.0, 2) == pytest.approx(1.0)


async def test_buckets_are_independent(backend: Backend) -> None:
    await drain(backend, "tenant-a", 1.0, 2)
    assert await backend.acquire("tenant-a", 1.0, 2) > 0

    assert await backend.acquire("tenant-b", 1.0, 2) == 0.0


@pytest.mark.parametrize("key", ["", "with spaces and {braces}", "ünï/cødé:*?", "x" * 500])
async def test_any_string_names_a_bucket(backend: Backend, key: str) -> None:
    assert await drain(backend, key, 1.0, 1) == [0.0]
    assert await backend.acquire(key, 1.0, 1) > 0
    assert await backend.acquire(key + "!", 1.0, 1) == 0.0


async def test_slow_rates_wait_long(backend: Backend) -> None:
    await backend.acquire("k", 1 / 3600, 1)  # one an hour

    assert await backend.acquire("k", 1 / 3600, 1) == pytest.approx(3600.0)


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1), (-1.0, 1), (float("inf"), 1), (float("nan"), 1), (1.0, 0)])
async def test_a_bucket_that_can_never_fill_is_refused(backend: Backend, rate: float, burst: int) -> None:
    with pytest.raises(ValueError):
        await backend.acquire("k", rate, burst)


async def test_concurrent_callers_share_one_bucket(backend: Backend) -> None:
    # One call first: redis-py's async cluster client races when commands arrive before it has connected.
    await backend.acquire("warm-up", 1.0, 1)
    waits = await asyncio.gather(*(backend.acquire("shared", 0.001, 5) for _ in range(20)))

    assert sum(1 for wait in waits if wait == 0.0) == 5


# -- Redis only --------------------------------------------------------------------------------------
@pytest.mark.redis
async def test_redis_buckets_live_under_the_partition_tag_and_expire_once_full(redis_url: str) -> None:
    async with fresh_backend(redis_url) as backend:  # server TIME, not the fake clock
        await backend.acquire("api-key:ci", 10.0, 5)
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        try:
            keys = client.keys("*")
            assert keys == [backend.keys.rate_bucket("api-key:ci")]
            assert keys[0].startswith("hexq:{hexq}:rate:") and "ci" not in keys[0]
            assert 0 < client.pttl(keys[0]) <= 1100  # one token to refill at 10/s, plus a second's slack
        finally:
            client.close()


@pytest.mark.redis
async def test_redis_refuses_a_bad_rate_before_calling_the_server(redis_url: str) -> None:
    async with fresh_backend(redis_url, LinkedClock()) as backend:
        with pytest.raises(ValueError):
            await backend.acquire("k", 0.0, 1)

"""Real Redis for tests, on 127.0.0.1 only: a container, a redis-server process, or a 3-master cluster.

The single server comes from a Docker engine when one is reachable (DOCKER_HOST, or
/var/run/docker.sock) and has the image named by HEXQ_TEST_REDIS_IMAGE (default
hexq-test/redis:local, built by infra/ci/redis-image.sh); it runs with host networking, so no
registry and no bridge network are needed. Otherwise a redis-server process is started. With
neither, Redis tests skip locally and fail when CI=true. Never fakeredis: it is not the real Lua.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from functools import partial
from pathlib import Path
from typing import NoReturn

import pytest
import redis
from redis.cluster import RedisCluster

from hexq.adapters.redis import RedisBackend, ShardedRedisBackend, from_url
from hexq.adapters.redis.keys import Keys
from hexq.core.clock import FakeClock

IMAGE_ENV = "HEXQ_TEST_REDIS_IMAGE"
DEFAULT_IMAGE = "hexq-test/redis:local"
USED: list[str] = []  # what served Redis in this session, for the terminal summary
_taken: set[int] = set()

SyncClient = redis.Redis | RedisCluster


def unavailable(reason: str) -> NoReturn:
    """Skip on a developer machine; fail in CI, where a missing server must not pass silently."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"Redis is required in CI: {reason}")
    pytest.skip(reason)


def free_port(*, with_bus: bool = False) -> int:
    """A free loopback port (and port + 10000 free too, for a cluster node's bus)."""
    for _ in range(200):
        port = random.randrange(20000, 30000)
        if port not in _taken and all(_bindable(p) for p in ([port, port + 10000] if with_bus else [port])):
            _taken.add(port)
            return port
    raise RuntimeError("no free loopback port")


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_until(ready: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready after {timeout:g}s")
        time.sleep(0.05)


def _answers_ping(port: int) -> bool:
    try:
        with redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5) as client:
            return bool(client.ping())  # LOADING raises BusyLoadingError, a ConnectionError
    except redis.ConnectionError:
        return False


# -- one server ------------------------------------------------------------------------------------
@contextmanager
def single_server(tmp: Path) -> Iterator[str]:
    image = os.environ.get(IMAGE_ENV, DEFAULT_IMAGE)
    if _docker_has(image):
        with _container(image) as url:
            yield url
    elif shutil.which("redis-server"):
        with _process(tmp) as url:
            yield url
    else:
        unavailable(f"no Docker engine with the image {image!r} and no redis-server on PATH")


def _docker_has(image: str) -> bool:
    if not (os.environ.get("DOCKER_HOST") or os.path.exists("/var/run/docker.sock")):
        return False
    import docker

    try:
        client = docker.from_env(timeout=10)
    except docker.errors.DockerException:
        return False
    try:
        client.images.get(image)
        return True
    except docker.errors.DockerException:  # ImageNotFound, or the engine does not answer
        return False
    finally:
        client.close()


@contextmanager
def _container(image: str) -> Iterator[str]:
    # The reaper (Ryuk) image cannot be pulled without a registry; the `with` below removes the
    # container instead. An explicit TESTCONTAINERS_RYUK_DISABLED setting wins.
    os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
    from testcontainers.core.container import DockerContainer

    port = free_port()
    container = (DockerContainer(image)
                 .with_kwargs(network_mode="host")  # no port mapping: the server binds 127.0.0.1 itself
                 .with_command(f"/usr/bin/redis-server --port {port} --bind 127.0.0.1 --save '' --appendonly no"))
    with container:
        # Ready means PING answers (not LOADING); polled here rather than with a log wait strategy,
        # whose API moved between testcontainers 4.x releases.
        wait_until(partial(_answers_ping, port), f"Redis container on port {port}")
        USED.append(f"container {image} on 127.0.0.1:{port}")
        yield f"redis://127.0.0.1:{port}/0"


def _start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(["redis-server", *args, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                                stdout=out, stderr=subprocess.STDOUT)


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def _process(tmp: Path) -> Iterator[str]:
    port = free_port()
    process = _start(["--port", str(port), "--dir", str(tmp)], tmp / "redis.log")
    try:
        wait_until(partial(_answers_ping, port), f"redis-server on port {port}")
        USED.append(f"redis-server process on 127.0.0.1:{port}")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        _stop([process])


# -- a cluster of three masters --------------------------------------------------------------------
@contextmanager
def cluster(tmp: Path) -> Iterator[str]:
    if not (shutil.which("redis-server") and shutil.which("redis-cli")):
        unavailable("a Redis Cluster needs redis-server and redis-cli on PATH")
    ports = [free_port(with_bus=True) for _ in range(3)]
    processes = []
    try:
        for port in ports:
            node = tmp / str(port)
            node.mkdir()
            processes.append(_start(["--port", str(port), "--dir", str(node), "--cluster-enabled", "yes",
                                     "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000"],
                                    node / "redis.log"))
        for port in ports:
            wait_until(partial(_answers_ping, port), f"cluster node on port {port}")
        subprocess.run(["redis-cli", "--cluster", "create", *(f"127.0.0.1:{port}" for port in ports),
                        "--cluster-replicas", "0", "--cluster-yes"], check=True, capture_output=True, timeout=60)
        for port in ports:
            wait_until(partial(_cluster_ok, port), f"cluster state at node {port}")
        USED.append("redis-server cluster on 127.0.0.1:" + ",".join(map(str, ports)))
        yield "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in ports)
    finally:
        _stop(processes)


def _cluster_ok(port: int) -> bool:
    with redis.Redis(host="127.0.0.1", port=port, decode_responses=True) as client:
        info = client.execute_command("CLUSTER INFO")  # parsed into a dict by redis-py
    return bool(info.get("cluster_state") == "ok" and str(info.get("cluster_slots_assigned")) == "16384")


# -- clients and backends for tests ----------------------------------------------------------------
def sync_client(url: str) -> SyncClient:
    """A blocking client for fixtures: flushing, and moving the test clock from FakeClock.advance()."""
    if url.startswith("redis+cluster://"):
        host, _, port = url.removeprefix("redis+cluster://").split("?")[0].split(",")[0].rpartition(":")
        return RedisCluster(host=host, port=int(port), decode_responses=True)
    return redis.Redis.from_url(url.split("?")[0], decode_responses=True)  # without hexq's own options (shards=)


def flush(client: SyncClient) -> None:
    if isinstance(client, RedisCluster):
        client.flushall(target_nodes=RedisCluster.PRIMARIES)
    else:
        client.flushdb()


@contextmanager
def flushed(url: str) -> Iterator[str]:
    """`url`'s data flushed before and after: the server is shared by the test session, so what a test
    counts and reads must be its own."""
    client = sync_client(url)
    try:
        flush(client)
        yield url
        flush(client)
    finally:
        client.close()


class LinkedClock(FakeClock):
    """A FakeClock that tells its links when it moves: a Redis backend in test-clock mode keeps the
    fake "now" in a key, and the contract tests only ever call clock.advance()."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        super().__init__(start)
        self.links: list[Callable[[float], None]] = []

    def advance(self, seconds: float) -> None:
        super().advance(seconds)
        for link in self.links:
            link(self.now())


@asynccontextmanager
async def fresh_backend(url: str, clock: LinkedClock | None = None,
                        weights: Mapping[str, int] | None = None) -> AsyncIterator[RedisBackend | ShardedRedisBackend]:
    """The backend `url` names (a ShardedRedisBackend for `shards=`) on an emptied database; in test-clock mode
    when a clock is given."""
    client = sync_client(url)
    try:
        flush(client)
        if clock is not None:
            key = Keys().test_clock

            def move(now: float) -> None:
                client.set(key, repr(now))

            move(clock.now())
            clock.links.append(move)
        backend = from_url(url, test_clock=clock is not None, weights=weights)
        try:
            yield backend
        finally:
            await backend.close()
            flush(client)
    finally:
        client.close()

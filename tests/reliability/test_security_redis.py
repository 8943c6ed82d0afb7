"""Redis in production shape (RELIABILITY D8): the start-up settings check, an ACL user, and TLS.

Each test starts its own redis-server process(es) on free loopback ports with the settings under test.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
from redis_server import free_port, wait_until

from hexq.adapters.redis import RedisBackend
from hexq.core import outcome
from hexq.core.clock import SystemClock
from hexq.core.errors import BackendUnavailable, ConfigurationError
from hexq.core.model import Settlement, TaskStatus
from hexq.core.registry import Registry
from hexq.core.services import SubmitRequest, TaskService
from hexq.functions.redis_check import startup_check

pytestmark = [pytest.mark.reliability, pytest.mark.redis,
              pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server on PATH")]


@contextmanager
def redis_process(tmp: Path, *args: str, tls: dict[str, str] | None = None) -> Iterator[int]:
    port = free_port()
    listen = (["--port", "0", "--tls-port", str(port), *[x for k, v in tls.items() for x in (f"--{k}", v)]]
              if tls else ["--port", str(port)])
    log = (tmp / f"redis-{port}.log").open("wb")
    process = subprocess.Popen(["redis-server", *listen, "--bind", "127.0.0.1", "--dir", str(tmp), *args],
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        def up() -> bool:
            if process.poll() is not None:
                raise AssertionError((tmp / f"redis-{port}.log").read_text())
            try:
                kwargs: dict[str, Any] = {"ssl": True, "ssl_cert_reqs": "none"} if tls else {}
                with redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5, **kwargs) as client:
                    return bool(client.ping())
            except redis.ConnectionError:
                return False

        wait_until(up, f"redis-server on {port}")
        yield port
    finally:
        process.terminate()
        process.wait(10)
        log.close()


PRODUCTION = ("--appendonly", "yes", "--appendfsync", "everysec", "--maxmemory-policy", "noeviction")


# -- the settings check ----------------------------------------------------------------------------------
async def test_a_production_redis_passes(tmp_path: Path) -> None:
    with redis_process(tmp_path, *PRODUCTION, "--save", "") as port:
        findings = await startup_check(f"redis://127.0.0.1:{port}/0", strict=True)
    assert findings is not None and findings.problems == [] and findings.unchecked is None


@pytest.mark.parametrize(("settings", "expect"), [
    (("--appendonly", "yes", "--maxmemory-policy", "allkeys-lru"), ["maxmemory-policy is 'allkeys-lru'"]),
    (("--appendonly", "no", "--save", "", "--maxmemory-policy", "noeviction"), ["persistence is off"]),
    (("--appendonly", "no", "--save", "3600 1", "--maxmemory-policy", "volatile-lru"),
     ["maxmemory-policy is 'volatile-lru'", "appendonly is 'no'"]),
])
async def test_an_unsafe_redis_is_warned_about_and_strict_refuses(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, settings: tuple[str, ...], expect: list[str]) -> None:
    with redis_process(tmp_path, *settings) as port:
        url = f"redis://127.0.0.1:{port}/0"
        with caplog.at_level(logging.WARNING, logger="hexq.redis_check"):
            findings = await startup_check(url)
        assert findings is not None and [p[:len(e)] for p, e in zip(findings.problems, expect, strict=True)] == expect
        assert all(any(e in r.getMessage() for r in caplog.records) for e in expect)
        with pytest.raises(ConfigurationError, match="--strict"):
            await startup_check(url, strict=True)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("command", ["serve", "worker"])
def test_strict_serve_and_worker_exit_2_with_the_message(tmp_path: Path, command: str) -> None:
    with redis_process(tmp_path, "--appendonly", "no", "--save", "", "--maxmemory-policy", "allkeys-lru") as port:
        env = {**os.environ, "HEXQ_BACKEND": f"redis://127.0.0.1:{port}/0?partition=strict"}
        args = ["--port", "0"] if command == "serve" else []
        done = subprocess.run([sys.executable, "-m", "hexq.functions.cli", command, "--strict", *args], env=env,
                              capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "hexq: error: --strict: Redis is not configured for production" in done.stderr
    assert "maxmemory-policy is 'allkeys-lru'" in done.stderr and "persistence is off" in done.stderr


@pytest.mark.timeout(60)
def test_without_strict_an_unsafe_redis_only_warns_and_the_worker_starts(tmp_path: Path) -> None:
    with redis_process(tmp_path, "--appendonly", "no", "--save", "") as port:
        env = {**os.environ, "HEXQ_BACKEND": f"redis://127.0.0.1:{port}/0?partition=lax"}
        worker = subprocess.Popen([sys.executable, "-m", "hexq.functions.cli", "worker"], env=env, cwd=tmp_path,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            assert worker.stdout is not None
            lines: list[str] = []
            while not lines or "hexq worker " not in lines[-1]:  # the warning comes first, then the banner
                line = worker.stdout.readline()
                if not line:
                    break
                lines.append(line)
        finally:
            worker.terminate()
            worker.wait(30)
            if worker.stdout is not None:
                worker.stdout.close()
    text = "".join(lines)
    assert "persistence is off" in text and "hexq worker " in text, text


# -- an ACL user without CONFIG ----------------------------------------------------------------------------
def _registry() -> Registry:
    registry = Registry()

    @registry.task("echo")
    async def echo(payload: dict[str, Any]) -> dict[str, Any]:
        return payload

    return registry


async def full_flow(url: str) -> None:
    """submit -> claim -> settle, and the task ends succeeded."""
    backend = RedisBackend.from_url(url)
    try:
        clock = SystemClock()
        task = (await TaskService(backend, backend, _registry(), clock).submit(SubmitRequest("echo", {"n": 1}))).task
        leases = await backend.claim(["default"], 1, lease_seconds=30, worker_id="w1", wait=1.0)
        assert [lease.task.id for lease in leases] == [task.id]
        settled = await backend.settle([Settlement(leases[0], outcome.succeeded(leases[0].task, {"n": 1}))])
        assert settled == [True]
        stored = await backend.get(task.id)
        assert stored is not None and stored.status is TaskStatus.SUCCEEDED
    finally:
        await backend.close()


ACL = ("--user", "hexq", "on", ">secret", "~*", "&*", "+@all", "-config")


async def test_an_acl_user_runs_the_full_flow_and_the_check_says_it_could_not_check(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with redis_process(tmp_path, *PRODUCTION, *ACL) as port:
        url = f"redis://hexq:secret@127.0.0.1:{port}/0?partition=acl"
        await full_flow(url)
        with caplog.at_level(logging.WARNING, logger="hexq.redis_check"):
            findings = await startup_check(url, strict=True)  # unknown is not wrong: no refusal
        assert findings is not None and findings.problems == []
        assert findings.unchecked is not None and "CONFIG" in findings.unchecked
        assert any("could not check" in r.getMessage() for r in caplog.records)
        assert "secret" not in caplog.text


async def test_a_wrong_password_is_backend_unavailable_not_a_crash(tmp_path: Path) -> None:
    with redis_process(tmp_path, *PRODUCTION, *ACL) as port:
        backend = RedisBackend.from_url(f"redis://hexq:wrong@127.0.0.1:{port}/0?partition=acl")
        try:
            with pytest.raises((BackendUnavailable, ConfigurationError)) as caught:
                await TaskService(backend, backend, _registry(), SystemClock()).submit(SubmitRequest("echo", {}))
            assert "wrong" not in str(caught.value)
            with pytest.raises((BackendUnavailable, ConfigurationError)):
                await backend.ping()
        finally:
            await backend.close()


# -- TLS ------------------------------------------------------------------------------------------------
def _tls_files(tmp: Path) -> dict[str, str]:
    if shutil.which("openssl") is None:
        pytest.skip("needs openssl to make a self-signed certificate")
    cert, key = tmp / "redis.crt", tmp / "redis.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return {"tls-cert-file": str(cert), "tls-key-file": str(key), "tls-ca-cert-file": str(cert),
            "tls-auth-clients": "no"}



async def test_the_full_flow_over_tls(tmp_path: Path) -> None:
    tls = _tls_files(tmp_path)
    with redis_process(tmp_path, *PRODUCTION, tls=tls) as port:
        await full_flow(f"rediss://127.0.0.1:{port}/0?ssl_cert_reqs=none&partition=tls")
        await full_flow(f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={tls['tls-ca-cert-file']}&partition=tls2")
        findings = await startup_check(f"rediss://127.0.0.1:{port}/0?ssl_cert_reqs=none", strict=True)
        assert findings is not None and findings.problems == []
        # A plain-text client gets nothing from a TLS port: BackendUnavailable, quickly.
        backend = RedisBackend.from_url(f"redis://127.0.0.1:{port}/0")
        try:
            with pytest.raises(BackendUnavailable):
                await backend.ping()
        finally:
            await backend.close()

"""Redis faults (RELIABILITY.md T7, T8, T9) against real processes: our own redis-server (conftest.py), a
`hexq serve` API with its poller and pool workers, and `hexq worker` processes, all on 127.0.0.1.

T7  kill -9 redis (AOF everysec) during processing, restart after 1 s: the API answers 503 (never 500)
    while it is down, workers reconnect, every accepted task completes: lost = 0.
T8  negative control: the same kill with persistence off; the checker must REPORT the loss (lost > 0),
    which proves that T7's lost = 0 means something.
T9  Redis unavailable at submit (a closed port, or a SIGSTOPped server): 503 + Retry-After +
    {"error": "backend_unavailable"} within the connect/socket timeout bound; /readyz 503 too.
    The same for a server that is out of memory (maxmemory reached, noeviction: OOM, which redis-py raises
    as OutOfMemoryError, for EVALSHA too) and one still LOADING its dataset after a restart (BusyLoadingError),
    both real redis-server processes; nothing is stored by a refused submit.
"""

from __future__ import annotations

import random
import re
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from harness import (
    ApiCounts,
    FinalTask,
    Procs,
    RedisServer,
    api_tasks,
    assert_passes,
    check,
    free_port,
    percentile,
    read_ledger,
    report,
    wait_for,
)
from processes import wait_healthy
from redis.backoff import NoBackoff
from redis.retry import Retry

pytestmark = [pytest.mark.reliability, pytest.mark.chaos, pytest.mark.redis, pytest.mark.slow]

TERMINAL = ("succeeded", "dead", "cancelled")


def _serve(procs: Procs, backend: str, env: dict[str, str]) -> tuple[str, Any]:
    port = free_port()
    proc = procs.start("serve", "serve", "--port", str(port), "--backend", backend, env=env)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(proc.process, url, proc.log, timeout=60.0)
    return url, proc


class Submitter(threading.Thread):
    """POSTs bulk chunks with idempotency keys; a chunk answered 503 (or not answered) is retried, so a
    retry after an outage replays what was already stored instead of creating a second task."""

    def __init__(self, url: str, ns: list[int], counts: ApiCounts, *, chunk: int, pause: float,
                 deadline: float, prefix: str) -> None:
        super().__init__(name="submitter", daemon=True)
        self.url, self.ns, self.counts = url, ns, counts
        self.chunk, self.pause, self.deadline, self.prefix = chunk, pause, deadline, prefix
        self.accepted: dict[str, int] = {}
        self.indeterminate: set[int] = set()
        self.rejected: list[tuple[int, str]] = []
        self.retried_chunks = 0
        self.error: BaseException | None = None

    def body(self, n: int) -> dict[str, Any]:
        return {"type": "ledger", "payload": {"n": n, "ms": random.randint(0, 20)},
                "idempotency_key": f"{self.prefix}-{n}"}

    def run(self) -> None:
        try:
            with httpx.Client(base_url=self.url, trust_env=False, timeout=10.0) as client:
                for i in range(0, len(self.ns), self.chunk):
                    self.post(client, self.ns[i:i + self.chunk])
                    time.sleep(self.pause)
        except BaseException as exc:  # noqa: B036  # reported by the main thread
            self.error = exc

    def post(self, client: httpx.Client, ns: list[int]) -> None:
        bodies = [self.body(n) for n in ns]
        first = True
        while time.monotonic() < self.deadline:
            if not first:
                self.retried_chunks += 1
                time.sleep(0.2)
            first = False
            try:
                response = self.counts.note(client.post("/v1/tasks:bulk", json={"tasks": bodies}))
            except httpx.TransportError:
                with self.counts.lock:
                    self.counts.transport_errors += 1
                continue
            if response.status_code == 503:
                continue
            if response.status_code != 202:
                self.rejected.append((response.status_code, response.text[:300]))
                self.indeterminate.update(ns)
                return
            for task in response.json()["tasks"]:
                self.accepted[task["id"]] = int(task["payload"]["n"])
            return
        self.indeterminate.update(ns)  # never answered 202: it may or may not exist


def _probe_outage(url: str, counts: ApiCounts, seconds: float) -> list[tuple[int, float]]:
    """GET /readyz every 0.1 s for `seconds`: (status, latency) of each."""
    seen: list[tuple[int, float]] = []
    end = time.monotonic() + seconds
    with httpx.Client(base_url=url, trust_env=False, timeout=10.0) as client:
        while time.monotonic() < end:
            started = time.monotonic()
            try:
                status = counts.note(client.get("/readyz")).status_code
            except httpx.TransportError:
                status = 0
            seen.append((status, time.monotonic() - started))
            time.sleep(0.1)
    return seen


def _stats(client: httpx.Client, counts: ApiCounts) -> dict[str, int] | None:
    try:
        response = counts.note(client.get("/v1/stats"))
    except httpx.TransportError:
        return None
    return response.json()["by_status"] if response.status_code == 200 else None


# -- T7 ----------------------------------------------------------------------------------------------
@pytest.mark.timeout(240)
def test_t7_redis_kill9_with_aof_loses_nothing(redis_server: RedisServer, procs: Procs, tmp_path: Path) -> None:
    n_tasks, kill_at, down_for = 1500, 2.0, 1.0
    ledger_path = tmp_path / "ledger.txt"
    env = {"HEXQ_TEST_LEDGER": str(ledger_path), "HEXQ_WORKERS": "2", "HEXQ_CONCURRENCY": "10",
           "HEXQ_LEASE": "2", "HEXQ_GRACE": "1"}
    url, serve = _serve(procs, redis_server.url, env)
    procs.start("worker", "worker", "--backend", redis_server.url, env=env)
    counts = ApiCounts()
    t0 = time.monotonic()
    submitter = Submitter(url, list(range(n_tasks)), counts, chunk=25, pause=0.1, deadline=t0 + 90, prefix="t7")
    submitter.start()

    # Kill at ~kill_at s, once tasks are flowing through the workers (process start-up may be slow here).
    time.sleep(kill_at)
    wait_for(lambda: len(read_ledger(ledger_path).executions) >= 50, "the first executions", 60)
    submitting_at_kill = submitter.is_alive()
    accepted_at_kill = len(submitter.accepted)
    executed_at_kill = len(read_ledger(ledger_path).executions)
    kill_s = time.monotonic() - t0
    redis_server.kill9()
    killed_wall = time.time()
    outage = _probe_outage(url, counts, down_for)
    ready_s = redis_server.restart()
    restarted_wall = time.time()

    submitter.join(120)
    assert not submitter.is_alive(), "submitting took over 120 s"
    assert submitter.error is None, repr(submitter.error)
    with httpx.Client(base_url=url, trust_env=False, timeout=30.0) as client:
        def drained() -> bool:
            by_status = _stats(client, counts)
            return by_status is not None and sum(by_status.get(s, 0) for s in TERMINAL) >= len(submitter.accepted)

        wait_for(drained, f"draining {len(submitter.accepted)} tasks\n{procs.logs()}", 120, 0.25)
        wall_s = time.monotonic() - t0
        final = [FinalTask.from_api(t) for t in api_tasks(client, counts) if t["type"] == "ledger"]
    ledger = read_ledger(ledger_path)
    verdict = check(submitter.accepted, final, ledger, killed=True, indeterminate=submitter.indeterminate)
    after = [e.start for e in ledger.executions if e.start >= restarted_wall]
    reconnect_s = round(min(after) - restarted_wall, 3) if after else None
    outage_statuses = sorted({s for s, _ in outage})
    figures = report(tmp_path / "report.jsonl", "T7_redis_kill9_aof", verdict, api=counts, wall_s=wall_s,
                     tasks_sent=n_tasks, kill_at_s=round(kill_s, 3),
                     accepted_at_kill=accepted_at_kill, executed_at_kill=executed_at_kill,
                     executed_total=len(ledger.executions), extra_executions=verdict.extra_executions,
                     indeterminate=verdict.indeterminate, rejected=len(submitter.rejected),
                     retried_chunks=submitter.retried_chunks, transport_errors=counts.transport_errors,
                     outage_probe_statuses=outage_statuses,
                     outage_probe_p99_s=round(percentile([s for _, s in outage], 99) or 0.0, 3),
                     down_s=round(restarted_wall - killed_wall, 3), redis_ready_s=round(ready_s, 3),
                     worker_reconnect_s=reconnect_s, statuses=dict(counts.statuses))
    assert_passes(figures, procs.logs)
    assert serve.alive(), "hexq serve died with Redis"
    assert not submitter.rejected, submitter.rejected[:3]
    assert counts.api_503 > 0, "the API never answered 503 while Redis was down"
    assert submitting_at_kill and executed_at_kill > 0, "the kill did not happen while tasks were flowing"
    assert verdict.accepted + verdict.indeterminate == n_tasks


# -- T8 ----------------------------------------------------------------------------------------------
@pytest.mark.timeout(180)
def test_t8_negative_control_without_persistence_reports_loss(redis_server_no_aof: RedisServer, procs: Procs,
                                                              tmp_path: Path) -> None:
    """Deterministic: 200 tasks accepted and parked (the only worker running before the kill serves another
    queue), kill -9 of a redis-server without AOF or RDB, restart, workers on: the checker must report every
    accepted task as lost. This is the control that shows T7's lost = 0 is a real measurement."""
    server = redis_server_no_aof
    n_tasks = 200
    ledger_path = tmp_path / "ledger.txt"
    env = {"HEXQ_TEST_LEDGER": str(ledger_path), "HEXQ_WORKERS": "1", "HEXQ_LEASE": "2", "HEXQ_GRACE": "1"}
    url, serve = _serve(procs, server.url, {**env, "HEXQ_QUEUES": "parked"})
    counts = ApiCounts()
    t0 = time.monotonic()
    submitter = Submitter(url, list(range(n_tasks)), counts, chunk=50, pause=0.0, deadline=t0 + 60, prefix="t8")
    submitter.run()  # in this thread: every chunk is answered before the kill
    assert submitter.error is None and len(submitter.accepted) == n_tasks, (submitter.error, submitter.rejected)
    with httpx.Client(base_url=url, trust_env=False, timeout=30.0) as client:
        stored = (_stats(client, counts) or {}).get("queued", 0)
        server.kill9()
        outage = _probe_outage(url, counts, 1.0)
        server.restart()
        procs.start("worker", "worker", "--backend", server.url, env=env)
        time.sleep(3.0)  # workers would run anything that survived; nothing can have
        wall_s = time.monotonic() - t0
        final = [FinalTask.from_api(t) for t in api_tasks(client, counts) if t["type"] == "ledger"]
    verdict = check(submitter.accepted, final, read_ledger(ledger_path), killed=True)
    figures = report(tmp_path / "report.jsonl", "T8_redis_kill9_no_persistence", verdict, api=counts,
                     wall_s=wall_s, queued_before_kill=stored, tasks_after_restart=len(final),
                     outage_probe_statuses=sorted({s for s, _ in outage}), control="lost > 0 expected")
    assert serve.alive()
    assert stored == n_tasks, "the tasks were not all stored before the kill"
    assert verdict.lost > 0, "the checker failed to detect the loss of unpersisted tasks"
    assert verdict.lost == n_tasks
    assert verdict.unexpected == 0 and figures["api_5xx"] == 0, figures


# -- T9 ----------------------------------------------------------------------------------------------
def _unavailable_answers(url: str, counts: ApiCounts, tries: int = 5) -> list[dict[str, Any]]:
    answers = []
    with httpx.Client(base_url=url, trust_env=False, timeout=30.0) as client:
        for i in range(tries):
            for method, path, body in (("POST", "/v1/tasks", {"type": "noop", "payload": {"i": i}}),
                                       ("GET", "/readyz", None)):
                answers.append(_timed(client, counts, method, path, body))
    return answers


def _timed(client: httpx.Client, counts: ApiCounts, method: str, path: str,
           body: dict[str, Any] | None = None) -> dict[str, Any]:
    """One request: its status, latency, Retry-After, error code and message (which names the driver error)."""
    started = time.monotonic()
    response = counts.note(client.request(method, path, json=body))
    latency = time.monotonic() - started
    return {"path": path, "status": response.status_code, "latency": latency,
            "retry_after": response.headers.get("retry-after"), "error": _error(response),
            "message": _message(response), "json": _json(response)}


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _error(response: httpx.Response) -> str | None:
    body = _json(response)
    return str(body.get("error")) if isinstance(body, dict) else None


def _message(response: httpx.Response) -> str | None:
    body = _json(response)
    return str(body.get("message")) if isinstance(body, dict) and "message" in body else None


def _driver_errors(answers: list[dict[str, Any]]) -> list[str]:
    """The redis-py exception classes named in 503 messages ("redis: OutOfMemoryError: ...")."""
    found = {m.group(1) for a in answers if a["status"] == 503 and a["message"]
             for m in [re.match(r"redis: (\w+):", a["message"])] if m}
    return sorted(found)


def _check_unavailable(answers: list[dict[str, Any]], bound: float) -> None:
    for answer in answers:
        assert answer["status"] == 503, answer
        assert answer["error"] == "backend_unavailable", answer
        assert answer["retry_after"] is not None and int(answer["retry_after"]) >= 1, answer
        assert answer["latency"] < bound, answer


@pytest.mark.timeout(120)
def test_t9_closed_port_answers_503_fast(procs: Procs, tmp_path: Path) -> None:
    closed = free_port()  # nothing listens there
    url, serve = _serve(procs, f"redis://127.0.0.1:{closed}/0", {"HEXQ_WORKERS": "1"})
    counts = ApiCounts()
    t0 = time.monotonic()
    answers = _unavailable_answers(url, counts)
    latencies = [a["latency"] for a in answers]
    figures = report(tmp_path / "report.jsonl", "T9_redis_closed_port", None, api=counts,
                     wall_s=time.monotonic() - t0, latency_p50_s=round(percentile(latencies, 50) or 0, 4),
                     latency_p99_s=round(percentile(latencies, 99) or 0, 4),
                     retry_after=sorted({a["retry_after"] for a in answers}))
    assert_passes(figures, procs.logs)
    _check_unavailable(answers, bound=5.0)
    assert serve.alive()


@pytest.mark.timeout(120)
def test_t9_sigstopped_redis_answers_503_within_the_socket_timeout(redis_server: RedisServer, procs: Procs,
                                                                   tmp_path: Path) -> None:
    """A hung (SIGSTOPped) server: 503 within socket_timeout (2 s). Reported, not asserted: a write sent
    before the timeout may still run when the server resumes, so a 503 here is indeterminate (the task can
    exist after all); clients retry with an idempotency key (D1). `submitted_during_stop_but_stored`."""
    url, serve = _serve(procs, redis_server.url, {"HEXQ_WORKERS": "1"})
    counts = ApiCounts()
    with httpx.Client(base_url=url, trust_env=False, timeout=30.0) as client:
        warm = counts.note(client.post("/v1/tasks", json={"type": "noop", "payload": {"warm": True}}))
        assert warm.status_code == 202, warm.text
        t0 = time.monotonic()
        redis_server.stop()
        try:
            answers = _unavailable_answers(url, counts, tries=2)
        finally:
            redis_server.cont()
        wall_s = time.monotonic() - t0
        wait_for(lambda: counts.note(client.get("/readyz")).status_code == 200, "readyz after SIGCONT", 30, 0.2)
        # Nothing half-written: every task that exists is a whole record the API can read back.
        tasks = api_tasks(client, counts)
        whole = [counts.note(client.get(f"/v1/tasks/{t['id']}")).status_code == 200 for t in tasks]
    latencies = [a["latency"] for a in answers]
    figures = report(tmp_path / "report.jsonl", "T9_redis_sigstop", None, api=counts, wall_s=wall_s,
                     accepted=1, completed=0, latency_p50_s=round(percentile(latencies, 50) or 0, 4),
                     latency_p99_s=round(percentile(latencies, 99) or 0, 4),
                     tasks_after_cont=len(tasks), submitted_during_stop_but_stored=len(tasks) - 1)
    assert_passes(figures, procs.logs)
    _check_unavailable(answers, bound=5.0)
    assert all(whole), tasks
    assert serve.alive()


def _footprint(admin: redis.Redis, skip: str) -> dict[str, Any]:
    """Every key but those starting with `skip`, with its type and contents: equal footprints mean nothing
    was written in between (not a field of a hash, not a member of a sorted set)."""
    read = {"hash": admin.hgetall, "string": admin.get, "set": admin.smembers, "list": lambda k: admin.lrange(k, 0, -1),
            "zset": lambda k: admin.zrange(k, 0, -1, withscores=True)}
    found: dict[str, Any] = {}
    for key in admin.scan_iter(count=1000):
        if not key.startswith(skip):
            kind = admin.type(key)
            found[key] = (kind, read[kind](key) if kind in read else None)
    return found


def _fill_until_oom(admin: redis.Redis, prefix: str, value_bytes: int = 1024, batch: int = 100) -> int:
    """SET 1 KiB values until Redis refuses one with OOM; returns how many it took."""
    written = 0
    value = "x" * value_bytes
    while written < 1_000_000:
        pipe = admin.pipeline(transaction=False)
        for i in range(written, written + batch):
            pipe.set(f"{prefix}{i}", value)
        results = pipe.execute(raise_on_error=False)
        written += sum(1 for r in results if r is True)
        if any(isinstance(r, redis.exceptions.OutOfMemoryError) for r in results):
            return written
    raise AssertionError("maxmemory was never reached")


@pytest.mark.timeout(120)
def test_t9_redis_out_of_memory_answers_503_and_stores_nothing(redis_server: RedisServer, procs: Procs,
                                                               tmp_path: Path) -> None:
    """maxmemory reached under noeviction (filled with 1 KiB keys until Redis says OOM): every submit answers
    503 + Retry-After + backend_unavailable at once (the enqueue script is refused at its first write, so it
    writes nothing; redis-py raises OutOfMemoryError for that EVALSHA), reads still answer 200, and not one
    key, field or member of hexq's changes. With maxmemory raised again the next submit is accepted."""
    fill_prefix = "t9-oom-fill:"
    url, serve = _serve(procs, redis_server.url, {"HEXQ_WORKERS": "1", "HEXQ_QUEUES": "parked"})
    counts = ApiCounts()
    admin = redis_server.client()
    with httpx.Client(base_url=url, trust_env=False, timeout=30.0) as client:
        warm = [counts.note(client.post("/v1/tasks", json={"type": "noop", "payload": {"warm": i}})) for i in range(5)]
        assert [w.status_code for w in warm] == [202] * 5, [w.text for w in warm]
        before = _stats(client, counts)
        assert before is not None and sum(before.values()) == 5, before
        used_at_start = int(admin.info("memory")["used_memory"])
        admin.config_set("maxmemory", used_at_start + 1024 * 1024)
        filled = _fill_until_oom(admin, fill_prefix)
        # Over the limit by a margin, so that a freed client buffer cannot bring it back under mid-test.
        admin.config_set("maxmemory", int(admin.info("memory")["used_memory"]) - 64 * 1024)
        assert admin.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
        footprint = _footprint(admin, fill_prefix)

        t0 = time.monotonic()
        answers: list[dict[str, Any]] = []
        for i in range(10):
            answers.append(_timed(client, counts, "POST", "/v1/tasks", {"type": "noop", "payload": {"i": i}}))
            answers.append(_timed(client, counts, "POST", "/v1/tasks", {"type": "noop", "payload": {"i": i},
                                                                         "idempotency_key": f"t9-oom-{i}"}))
            answers.append(_timed(client, counts, "POST", "/v1/tasks:bulk",
                                  {"tasks": [{"type": "noop", "payload": {"i": i, "j": j}} for j in range(3)]}))
        wall_s = time.monotonic() - t0
        reads = {path: _timed(client, counts, "GET", path)
                 for path in (f"/v1/tasks/{warm[0].json()['id']}", "/v1/tasks", "/v1/stats", "/readyz")}
        still_oom = _refused(admin, fill_prefix)
        footprint_after = _footprint(admin, fill_prefix)

        admin.config_set("maxmemory", 0)
        recovered = counts.note(client.post("/v1/tasks", json={"type": "noop", "payload": {"after": True}}))
        after = _stats(client, counts)
        tasks = api_tasks(client, counts)
    admin.close()
    latencies = [a["latency"] for a in answers]
    figures = report(tmp_path / "report.jsonl", "T9_redis_oom", None, api=counts, wall_s=wall_s,
                     accepted=len(warm) + 1, completed=0, submits_refused=sum(a["status"] == 503 for a in answers),
                     submits=len(answers), latency_p50_s=round(percentile(latencies, 50) or 0, 4),
                     latency_p99_s=round(percentile(latencies, 99) or 0, 4),
                     retry_after=sorted({str(a["retry_after"]) for a in answers}),
                     driver_errors=_driver_errors(answers), filler_keys=filled,
                     reads_during_oom={"/v1/tasks/{id}" if p.startswith("/v1/tasks/") else p: r["status"]
                                       for p, r in reads.items()},
                     hexq_keys=len(footprint), hexq_keys_changed=_changed(footprint, footprint_after),
                     tasks_before=sum(before.values()), tasks_after=sum((after or {}).values()),
                     submit_after_raise=recovered.status_code)
    assert_passes(figures, procs.logs)
    assert still_oom, "Redis was no longer refusing writes at the end of the OOM window"
    _check_unavailable(answers, bound=1.0)
    assert figures["driver_errors"] == ["OutOfMemoryError"], [a["message"] for a in answers[:3]]
    assert reads[f"/v1/tasks/{warm[0].json()['id']}"]["status"] == 200, reads
    assert reads[f"/v1/tasks/{warm[0].json()['id']}"]["json"]["id"] == warm[0].json()["id"]
    assert reads["/v1/stats"]["status"] == 200 and reads["/v1/tasks"]["status"] == 200, reads
    assert footprint_after == footprint, "a refused submit changed hexq's keys"
    assert recovered.status_code == 202, recovered.text
    assert sum((after or {}).values()) == 6 and len(tasks) == 6, (after, len(tasks))
    assert serve.alive()


def _refused(admin: redis.Redis, prefix: str) -> bool:
    try:
        admin.set(f"{prefix}probe", "x")
    except redis.exceptions.OutOfMemoryError:
        return True
    return False


def _changed(before: dict[str, Any], after: dict[str, Any]) -> int:
    return sum(1 for key in before.keys() | after.keys() if before.get(key) != after.get(key))


def _loading(port: int) -> bool | None:
    """True while the server answers LOADING, False once it answers PONG, None while it does not answer.
    No retries: redis-py's default retries a LOADING reply with backoff for seconds (hexq's clients retry once)."""
    try:
        with redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5, socket_timeout=2.0,
                         retry=Retry(NoBackoff(), 0)) as probe:
            probe.ping()
    except redis.exceptions.BusyLoadingError:
        return True
    except redis.exceptions.ConnectionError:
        return None
    return False


@pytest.mark.timeout(120)
def test_t9_redis_loading_answers_503_fast_until_loaded(redis_server: RedisServer, procs: Procs,
                                                        tmp_path: Path) -> None:
    """A real redis-server restarted onto a dataset that takes seconds to load. Redis's hidden debug config
    `key-load-delay` (microseconds per key loaded; accepted on the command line by the 7.0 here) slows the
    load of the AOF's RDB base (BGREWRITEAOF writes every key into it), and
    `loading-process-events-interval-bytes 1024` lets it answer -LOADING between every ~40 keys instead of
    every 2 MB. While it loads, every submit answers 503 + Retry-After + backend_unavailable fast (redis-py:
    BusyLoadingError) and /readyz 503; the first submit after the load is accepted; nothing refused was stored."""
    n_filler, delay_us = 3000, 1000
    url, serve = _serve(procs, redis_server.url, {"HEXQ_WORKERS": "1", "HEXQ_QUEUES": "parked"})
    counts = ApiCounts()
    admin = redis_server.client()
    with httpx.Client(base_url=url, trust_env=False, timeout=30.0) as client:
        warm = counts.note(client.post("/v1/tasks", json={"type": "noop", "payload": {"warm": True}}))
        assert warm.status_code == 202, warm.text
        pipe = admin.pipeline(transaction=False)
        for i in range(n_filler):
            pipe.set(f"t9-load-fill:{i}", "x" * 10)
        pipe.execute()
        admin.bgrewriteaof()
        wait_for(lambda: (lambda p: p["aof_rewrite_in_progress"] == 0 and p["aof_rewrite_scheduled"] == 0)(
            admin.info("persistence")), "the AOF rewrite", 30, 0.1)
        admin.close()

        redis_server.spawn("--key-load-delay", str(delay_us), "--loading-process-events-interval-bytes", "1024")
        spawned = time.monotonic()
        wait_for(lambda: _loading(redis_server.port) is not None, "the restarted server to answer", 30)
        assert _loading(redis_server.port), "the server finished loading before the test saw it LOADING"
        t0 = time.monotonic()
        # POST and GET /readyz in turn until one succeeds: everything before that must be a 503.
        answers: list[dict[str, Any]] = []
        probes: list[dict[str, Any]] = []
        first_ok: dict[str, Any] | None = None
        i = 0
        while first_ok is None and time.monotonic() - t0 < 60:
            answer = (_timed(client, counts, "POST", "/v1/tasks", {"type": "noop", "payload": {"i": i}}) if i % 2 == 0
                      else _timed(client, counts, "GET", "/readyz"))
            if answer["status"] in (200, 202):
                first_ok = answer
                break
            (answers if i % 2 == 0 else probes).append(answer)
            i += 1
            time.sleep(0.05)
        first_ok_at = time.monotonic()
        accepted = _timed(client, counts, "POST", "/v1/tasks", {"type": "noop", "payload": {"after": True}})
        ready = _timed(client, counts, "GET", "/readyz")
        tasks = api_tasks(client, counts)
    loaded_log = re.findall(r"DB loaded from append only file: ([0-9.]+) seconds", redis_server.log())
    latencies = [a["latency"] for a in answers + probes]
    figures = report(tmp_path / "report.jsonl", "T9_redis_loading", None, api=counts, wall_s=first_ok_at - t0,
                     accepted=len(tasks), completed=0, submits_refused=len(answers),
                     readyz_refused=len(probes), latency_p50_s=round(percentile(latencies, 50) or 0, 4),
                     latency_p99_s=round(percentile(latencies, 99) or 0, 4),
                     latency_max_s=round(max(latencies, default=0), 4),
                     retry_after=sorted({str(a["retry_after"]) for a in answers + probes}),
                     driver_errors=_driver_errors(answers + probes), keys_loaded=n_filler,
                     key_load_delay_us=delay_us, redis_load_s=float(loaded_log[-1]) if loaded_log else None,
                     restart_to_first_ok_s=round(first_ok_at - spawned, 3),
                     first_ok=first_ok["path"] if first_ok else None,
                     submit_after=accepted["status"], tasks_after=len(tasks), readyz_after=ready["status"])
    assert_passes(figures, procs.logs)
    assert first_ok is not None, f"no success within 60 s of the restart\n{redis_server.log()[-2000:]}"
    assert len(answers) >= 2 and len(answers) + len(probes) >= 4, "the LOADING window was not observed"
    # Each refused request waits for the loader to serve a few round trips (it does so every ~40 keys here,
    # and hexq's client reconnects once on BusyLoadingError, a ConnectionError): bounded by socket_timeout.
    _check_unavailable(answers + probes, bound=2.0)
    assert figures["driver_errors"] == ["BusyLoadingError"], [a["message"] for a in answers[:3]]
    assert accepted["status"] == 202 and ready["status"] == 200, (accepted, ready)
    # The warm task, the accepted one and (if the first success was a submit) that one: nothing refused was stored.
    assert len(tasks) == 2 + (first_ok["path"] == "/v1/tasks"), tasks
    assert serve.alive()

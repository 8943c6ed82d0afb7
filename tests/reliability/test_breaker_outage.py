"""Circuit breakers and Retry(after=...) with real `hexq worker` and `hexq poller` processes on Redis: the breaker
state lives in Redis, so two worker processes agree on it. Each test prints one JSON line of figures.

The breaker test: 300 tasks of a type whose downstream is down (a flag file). The breaker opens after 3
consecutive failures; from then on neither worker runs the type's tasks (they are given back with their attempt
unused) except one half-open probe at a time. Once the flag is cleared, a probe succeeds, the breaker closes and
every task succeeds. Without a breaker every task would have failed until the outage ended, each attempt counted
(max_attempts 5: those whose attempts ran out would be dead).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from harness import (
    TASK_MODULES,
    Direct,
    Procs,
    RedisServer,
    assert_passes,
    check,
    final_of,
    read_ledger,
    report,
    wait_for,
)

from hexq.core.breaker import Circuit
from hexq.core.model import AttemptOutcome, TaskStatus
from hexq.core.services import SubmitRequest
from hexq.functions.bootstrap import bootstrap
from hexq.functions.settings import Settings

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

MODULES = f"{TASK_MODULES},tests.reliability.breaker_tasks"
N = 300
OUTAGE = 4.0  # seconds the downstream stays down once the breaker has opened: a few reset periods (1 s)


class BreakerDirect(Direct):
    """Direct (harness) with the breaker test's task types loaded."""

    def __init__(self, backend_url: str) -> None:
        super().__init__(backend_url)
        self.container = bootstrap(Settings(backend_url=backend_url, task_modules=tuple(MODULES.split(","))))

    def circuit(self, name: str) -> Circuit:
        _, states = self.run(self.container.backend.breaker_states())
        return next((s.circuit for s in states if s.name == name), Circuit.CLOSED)


def _start(procs: Procs, url: str, tmp_path: Path, workers: int) -> None:
    env = {"HEXQ_TASKS": MODULES, "HEXQ_TEST_LEDGER": str(tmp_path / "ledger.txt"),
           "HEXQ_TEST_DOWN": str(tmp_path / "down"), "HEXQ_CONCURRENCY": "8"}
    for i in range(workers):
        procs.start(f"worker{i}", "worker", "--backend", url, env=env)
    procs.start("poller", "poller", "--backend", url, env=env)  # promotes the held tasks when they are due


@pytest.mark.timeout(240)
def test_an_open_breaker_keeps_tasks_queued_across_two_workers_until_a_probe_closes_it(
        tmp_path: Path, procs: Procs, redis_server: RedisServer) -> None:
    url, down = redis_server.url, tmp_path / "down"
    down.touch()
    direct = BreakerDirect(url)
    try:
        accepted = {t.id: int(t.payload["n"]) for t in direct.submit_bulk(
            [SubmitRequest(type="rel_downstream", payload={"n": n}) for n in range(N)])}
        t0 = time.monotonic()
        _start(procs, url, tmp_path, workers=2)
        opened_after = wait_for(lambda: direct.circuit("rel_downstream") is not Circuit.CLOSED, "the breaker opens",
                                60.0)
        time.sleep(OUTAGE)  # down, breaker open: probes go and fail
        during = direct.query()
        ran = read_ledger(tmp_path / "ledger.txt").executions
        ran_during, ran_ns = len(ran), {e.n for e in ran}
        down.unlink()
        cleared = time.monotonic()
        wait_for(lambda: direct.by_status()["succeeded"] == N, f"all {N} succeed", 120.0)
        recovered_s = time.monotonic() - cleared
        final = direct.query()
        circuit = direct.circuit("rel_downstream")
    finally:
        direct.close()
    wall_s = time.monotonic() - t0
    ledger = read_ledger(tmp_path / "ledger.txt")
    verdict = check(accepted, final_of(final), ledger, killed=False)
    kept = [t for t in during if int(t.payload["n"]) not in ran_ns]  # never ran while the downstream was down
    # A task being given back at the moment of the query is running with the claim's attempt: not yet undone.
    settled = [t for t in kept if t.status is not TaskStatus.RUNNING]
    pids = {e.pid for e in ledger.executions}
    figures = report(tmp_path / "report.jsonl", "breaker_opens_across_workers", verdict, api=None, wall_s=wall_s,
                     breaker_opened_s=round(opened_after, 3), outage_s=OUTAGE,
                     failed_runs_during_outage=ran_during, kept_unrun=len(kept),
                     kept_attempts_used=sum(t.attempts for t in settled),
                     attempts_without_breaker_at_least=N, recovered_s=round(recovered_s, 3),
                     worker_pids=len(pids), circuit_at_end=circuit.value)
    assert_passes(figures, procs.logs)
    assert verdict.completed == N and verdict.dlq == 0
    assert circuit is Circuit.CLOSED
    # Open on both workers: few runs while down (3 to open, plus what was in flight, plus one probe at a time),
    # and the tasks that did not run still have their first attempt.
    assert ran_during < 60, figures
    assert len(settled) > N / 2 and all(t.attempts == 0 and t.history == () for t in settled), figures
    assert all(t.status in (TaskStatus.QUEUED, TaskStatus.SCHEDULED) for t in settled)
    assert sum(1 for t in final if t.attempts == 1) >= N - ran_during  # each kept task succeeded at its first


@pytest.mark.timeout(180)
def test_retry_after_defers_without_using_attempts(tmp_path: Path, procs: Procs, redis_server: RedisServer) -> None:
    """200 tasks with max_attempts 1 whose handler raises Retry(after=0.2) twice: all succeed, none is dead."""
    url, n = redis_server.url, 200
    direct = BreakerDirect(url)
    try:
        accepted = {t.id: int(t.payload["n"]) for t in direct.submit_bulk(
            [SubmitRequest(type="rel_slow_down", payload={"n": i}) for i in range(n)])}
        t0 = time.monotonic()
        _start(procs, url, tmp_path, workers=2)
        wait_for(lambda: direct.by_status()["succeeded"] + direct.by_status()["dead"] == n, "all finish", 120.0)
        final = direct.query()
    finally:
        direct.close()
    wall_s = time.monotonic() - t0
    ledger = read_ledger(tmp_path / "ledger.txt")
    deferrals = sum(1 for t in final for a in t.history if a.outcome is AttemptOutcome.DEFERRED)
    succeeded = sum(1 for t in final if t.status is TaskStatus.SUCCEEDED)
    figures = report(tmp_path / "report.jsonl", "retry_after_defers", None, api=None, wall_s=wall_s, accepted=n,
                     completed=succeeded, lost=n - succeeded, dlq=n - succeeded, runs=len(ledger.executions),
                     deferrals=deferrals, attempts_used=sum(t.attempts for t in final))
    assert_passes(figures, procs.logs)
    assert set(accepted) == {t.id for t in final}
    assert (succeeded, deferrals, len(ledger.executions)) == (n, 2 * n, 3 * n)
    assert all(t.attempts == 1 for t in final)  # two deferrals each, and the one attempt that succeeded

"""Worker-side reliability (RELIABILITY.md T3, T4, T6, T12, T13) with real `hexq worker` / `hexq poller`
processes on a SQLite file in tmp_path. Tasks are submitted and read back directly through the backend
(harness.Direct), so no API process competes with the workers. Each test prints one JSON line of figures.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from harness import (
    Direct,
    Procs,
    Supervisor,
    assert_passes,
    check,
    final_of,
    read_ledger,
    report,
    wait_for,
)

from hexq.core.model import TaskStatus
from hexq.core.services import SubmitRequest

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

SLACK = 10.0  # seconds on top of any expected duration: the machine is shared and may be loaded
TERMINAL = {"succeeded", "dead", "cancelled"}


def _backend(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'hexq.db'}"


def _ledger_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"HEXQ_TEST_LEDGER": str(tmp_path / "ledger.txt"), **extra}


def _lines(tmp_path: Path) -> int:
    path = tmp_path / "ledger.txt"
    return path.read_bytes().count(b"\n") if path.exists() else 0


# -- T3 ----------------------------------------------------------------------------------------------
@pytest.mark.timeout(180)
def test_t3_sigterm_is_graceful(tmp_path: Path, procs: Procs) -> None:
    """100 tasks of 1 s, 2 workers, SIGTERM both mid-run (grace 5 s): exit 0 within the grace, in-flight
    tasks finish, nothing is left running, no duplicates; a new worker finishes the rest; nothing lost."""
    grace = 5.0
    url = _backend(tmp_path)
    env = _ledger_env(tmp_path, HEXQ_GRACE=f"{grace:g}", HEXQ_CONCURRENCY="10")
    direct = Direct(url)
    try:
        requests = [SubmitRequest(type="ledger", payload={"n": n, "ms": 1000}) for n in range(100)]
        accepted = {t.id: int(t.payload["n"]) for t in direct.submit_bulk(requests)}
        t0 = time.monotonic()
        workers = [procs.start(f"worker{i}", "worker", "--backend", url, env=env) for i in range(2)]
        # Mid-run: the first batch finished and the next one is running.
        wait_for(lambda: _lines(tmp_path) >= 15, "the first executions", 60)
        wait_for(lambda: direct.by_status()["running"] > 0, "tasks in flight", 30)
        in_flight = {t.id for t in direct.query(TaskStatus.RUNNING)}
        done_at_sigterm = _lines(tmp_path)
        sent = time.monotonic()
        for worker in workers:
            worker.sigterm()
        exit_s: list[float] = []
        codes: list[int | None] = []
        for worker in workers:
            codes.append(worker.wait(grace + SLACK * 2))
            exit_s.append(time.monotonic() - sent)
        assert codes == [0, 0], f"exit codes {codes}\n{procs.logs()}"
        assert max(exit_s) < grace + SLACK, f"shutdown took {max(exit_s):.1f}s (grace {grace:g}s)"
        left_running = direct.by_status()["running"]
        in_flight_states = {direct.get(i).status.value for i in in_flight}
        done_after_stop = _lines(tmp_path)

        # A new worker finishes the rest.
        last = procs.start("worker-after", "worker", "--backend", url, env=env)
        wait_for(lambda: sum(direct.by_status()[s] for s in TERMINAL) >= len(accepted), "drain", 90, 0.25)
        last.sigterm()
        assert last.wait(grace + SLACK * 2) == 0
        wall_s = time.monotonic() - t0
        final = final_of(direct.get(i) for i in accepted)
    finally:
        direct.close()
    verdict = check(accepted, final, read_ledger(tmp_path / "ledger.txt"), killed=False)
    figures = report(tmp_path / "report.jsonl", "T3_sigterm_graceful", verdict, api=None, wall_s=wall_s,
                     grace_s=grace, shutdown_s=[round(s, 3) for s in exit_s], exit_codes=codes,
                     in_flight_at_sigterm=len(in_flight), executed_at_sigterm=done_at_sigterm,
                     executed_during_grace=done_after_stop - done_at_sigterm, left_running=left_running,
                     in_flight_final=sorted(in_flight_states))
    assert_passes(figures, procs.logs)
    assert left_running == 0, "tasks left in `running` after both workers exited"
    assert in_flight, "the SIGTERM did not come mid-run"
    assert in_flight_states == {"succeeded"}, "in-flight tasks (1 s each, grace 5 s) must finish, not be released"
    assert verdict.duplicated == 0


# -- T4 ----------------------------------------------------------------------------------------------
@pytest.mark.timeout(120)
def test_t4_sigterm_releases_a_task_longer_than_the_grace(tmp_path: Path, procs: Procs) -> None:
    """A 30 s task, grace 2 s: after SIGTERM the worker exits 0 within ~grace and the task is back in
    `queued` at once (no poller runs, so lease expiry could not have done it), attempts 1."""
    grace, lease = 2.0, 10.0
    url = _backend(tmp_path)
    env = _ledger_env(tmp_path, HEXQ_GRACE=f"{grace:g}", HEXQ_LEASE=f"{lease:g}")
    direct = Direct(url)
    try:
        # 30 s on the first attempt; a retry sleeps 0.1 s so that the test can finish the task afterwards.
        task = direct.submit("rel_sleep", {"n": 0, "first": 30, "seconds": 0.1})
        accepted = {task.id: 0}
        t0 = time.monotonic()
        worker = procs.start("worker", "worker", "--backend", url, env=env)
        wait_for(lambda: direct.get(task.id).status is TaskStatus.RUNNING, "the task running", 60)
        time.sleep(0.5)  # well inside the handler's sleep
        sent = time.monotonic()
        worker.sigterm()
        requeue_s = None
        deadline = sent + grace + SLACK * 2
        while time.monotonic() < deadline:
            if direct.get(task.id).status is TaskStatus.QUEUED:
                requeue_s = time.monotonic() - sent
                break
            time.sleep(0.05)
        code = worker.wait(SLACK * 2)
        exit_s = time.monotonic() - sent
        released = direct.get(task.id)
        assert code == 0, procs.logs()
        assert requeue_s is not None, f"not re-queued within {grace + SLACK * 2:g}s: {released}\n{procs.logs()}"
        assert released.status is TaskStatus.QUEUED, released
        assert released.attempts == 1, released
        assert exit_s < grace + SLACK
        assert _lines(tmp_path) == 0, "the aborted handler must not have recorded a completion"

        # The released task is claimable at once: a new worker runs it (attempt 2, the short sleep).
        procs.start("worker-after", "worker", "--backend", url, env=env)
        wait_for(lambda: direct.get(task.id).status is TaskStatus.SUCCEEDED, "the retry", 60)
        wall_s = time.monotonic() - t0
        final = final_of([direct.get(task.id)])
    finally:
        direct.close()
    ledger = read_ledger(tmp_path / "ledger.txt")
    verdict = check(accepted, final, ledger, killed=True)
    figures = report(tmp_path / "report.jsonl", "T4_sigterm_longer_than_grace", verdict, api=None, wall_s=wall_s,
                     grace_s=grace, lease_s=lease, requeue_s=round(requeue_s, 3), exit_s=round(exit_s, 3),
                     attempts_after_release=released.attempts, final_attempts=final[0].attempts,
                     executions=len(ledger.executions))
    assert_passes(figures, procs.logs)
    assert [e.attempt for e in ledger.executions] == [2]


# -- T6 ----------------------------------------------------------------------------------------------
@pytest.mark.timeout(120)
def test_t6_heartbeat_keeps_a_long_task(tmp_path: Path, procs: Procs) -> None:
    """Lease 1 s, a task of 5 s, a poller reclaiming expired leases every 0.2 s: the heartbeat keeps the
    lease, so the task runs exactly once."""
    lease, seconds = 1.0, 5.0
    url = _backend(tmp_path)
    env = _ledger_env(tmp_path, HEXQ_LEASE=f"{lease:g}", HEXQ_GRACE="1")
    direct = Direct(url)
    try:
        task = direct.submit("rel_sleep", {"n": 0, "seconds": seconds})
        t0 = time.monotonic()
        poller = procs.start("poller", "poller", "--backend", url, env=env)
        procs.start("worker", "worker", "--backend", url, env=env)
        wait_for(lambda: direct.get(task.id).is_terminal, "the long task", seconds + 60, 0.1)
        wall_s = time.monotonic() - t0
        poller_alive = poller.alive()
        done = direct.get(task.id)
        final = final_of([done])
    finally:
        direct.close()
    ledger = read_ledger(tmp_path / "ledger.txt")
    verdict = check({task.id: 0}, final, ledger, killed=False)
    figures = report(tmp_path / "report.jsonl", "T6_heartbeat_long_task", verdict, api=None, wall_s=wall_s,
                     lease_s=lease, task_s=seconds, executions=len(ledger.executions), attempts=done.attempts,
                     poller_running=poller_alive)
    assert_passes(figures, procs.logs)
    assert poller_alive, procs.logs()
    assert len(ledger.executions) == 1 and done.attempts == 1, (ledger, done)
    assert "lease was lost" not in procs.logs(100_000)


# -- T12 ---------------------------------------------------------------------------------------------
@pytest.mark.chaos
@pytest.mark.timeout(180)
def test_t12_poison_tasks_are_dead_lettered_after_three_attempts(tmp_path: Path, procs: Procs) -> None:
    """(a) a handler that always raises, (b) one that os._exit(1)s its worker, (c) one that sends its worker
    SIGSEGV: with max_attempts=3 each is dead after exactly 3 attempts with its last error; 50 healthy tasks
    alongside all complete once. (b) and (c) each have their own queue and a supervised worker that is
    respawned after every crash; (c)'s runs with faulthandler on and must still die by the signal (rc -11)."""
    url = _backend(tmp_path)
    env = _ledger_env(tmp_path, HEXQ_LEASE="2", HEXQ_GRACE="1")
    direct = Direct(url)
    supervisors: list[Supervisor] = []
    try:
        raising = direct.submit("rel_raise", {"n": 1000})
        exiting = direct.submit("rel_exit", {"n": 2000})  # queue "poison": only its supervised worker takes it
        segving = direct.submit("rel_segv", {"n": 3000})  # queue "poison-segv": likewise
        poison = (raising, exiting, segving)
        healthy = direct.submit_bulk([SubmitRequest(type="ledger", payload={"n": n, "ms": 20}) for n in range(50)])
        t0 = time.monotonic()
        procs.start("poller", "poller", "--backend", url, env=env)
        # Only "default": a worker serves every queue its task modules declare unless told otherwise, and
        # the poison queues belong to the supervised workers below.
        procs.start("worker", "worker", "--backend", url, env={**env, "HEXQ_QUEUES": "default"})
        for name, extra in (("poison-worker", {"HEXQ_QUEUES": "poison"}),
                            ("segv-worker", {"HEXQ_QUEUES": "poison-segv", "PYTHONFAULTHANDLER": "1"})):
            supervisors.append(Supervisor(lambda name=name, extra=extra: procs.start(
                name, "worker", "--backend", url, env={**env, **extra}), max_respawns=5))
        exit_supervisor, segv_supervisor = supervisors
        dead_at: dict[str, float] = {}

        def settled() -> bool:
            for task in poison:
                if task.id not in dead_at and direct.get(task.id).is_terminal:
                    dead_at[task.id] = time.monotonic() - t0
            counts = direct.by_status()
            return len(dead_at) == len(poison) and sum(counts[s] for s in TERMINAL) >= 50 + len(poison)

        wait_for(settled, "poison tasks dead and healthy tasks done", 120, 0.2)
        wall_s = time.monotonic() - t0
        for supervisor in supervisors:
            supervisor.stop()
        raised, exited, segved = (direct.get(t.id) for t in poison)
        final_healthy = final_of(direct.get(t.id) for t in healthy)
    finally:
        for supervisor in supervisors:
            supervisor.stop()
        direct.close()
    ledger = read_ledger(tmp_path / "ledger.txt")
    runs = {n: [e for e in ledger.executions if e.n == n] for n in (1000, 2000, 3000)}
    healthy_ledger = type(ledger)([e for e in ledger.executions if e.n < 1000], ledger.torn)
    verdict = check({t.id: int(t.payload["n"]) for t in healthy}, final_healthy, healthy_ledger, killed=False)
    poison_not_dead = sum(1 for t in (raised, exited, segved) if t.status is not TaskStatus.DEAD)
    segv_logs = "\n".join(p.log() for p in procs.started if p.name == "segv-worker")
    figures = report(tmp_path / "report.jsonl", "T12_poison", verdict, api=None, wall_s=wall_s,
                     accepted=verdict.accepted + len(poison), lost=verdict.lost + poison_not_dead,
                     dlq=len(poison) - poison_not_dead,
                     raise_attempts=raised.attempts, raise_error=raised.error,
                     raise_to_dlq_s=round(dead_at[raising.id], 3),
                     exit_attempts=exited.attempts, exit_error=exited.error,
                     exit_to_dlq_s=round(dead_at[exiting.id], 3),
                     exit_executions=len(runs[2000]), exit_worker_exits=exit_supervisor.exits,
                     segv_attempts=segved.attempts, segv_error=segved.error,
                     segv_to_dlq_s=round(dead_at[segving.id], 3),
                     segv_executions=len(runs[3000]), segv_worker_exits=segv_supervisor.exits,
                     segv_faulthandler_tracebacks=segv_logs.count("Fatal Python error: Segmentation fault"),
                     worker_respawns=exit_supervisor.respawns + segv_supervisor.respawns,
                     healthy_completed=verdict.completed)
    assert_passes(figures, procs.logs)
    assert raised.status is TaskStatus.DEAD and raised.attempts == 3, raised
    assert raised.error == "RuntimeError: poison 1000", raised.error
    assert len(runs[1000]) == 3
    assert exited.status is TaskStatus.DEAD and exited.attempts == 3, exited
    assert exited.error == "lease expired: worker lost or hung", exited.error
    assert len(runs[2000]) == 3
    assert exit_supervisor.exits == [1, 1, 1], exit_supervisor.exits
    assert segved.status is TaskStatus.DEAD and segved.attempts == 3, (segved, procs.logs())
    assert segved.error == "lease expired: worker lost or hung", segved.error
    assert len(runs[3000]) == 3
    assert segv_supervisor.exits == [-signal.SIGSEGV] * 3, segv_supervisor.exits  # died by the signal
    assert figures["segv_faulthandler_tracebacks"] == 3, segv_logs[-3000:]
    assert verdict.completed == 50 and verdict.duplicated == 0


# -- T13 ---------------------------------------------------------------------------------------------
@pytest.mark.timeout(120)
def test_t13_timeout_cancels_then_dead_letters(tmp_path: Path, procs: Procs) -> None:
    """timeout=1 s, an async handler sleeping 10 s: cancelled at about 1 s, error "timeout...", retried
    per policy (backoff 0.2 s, 0.4 s), dead after 3 attempts."""
    timeout = 1.0
    url = _backend(tmp_path)
    env = _ledger_env(tmp_path, HEXQ_LEASE="2", HEXQ_GRACE="1")
    direct = Direct(url)
    try:
        task = direct.submit("rel_timeout", {"n": 0, "seconds": 10})
        t0 = time.monotonic()
        procs.start("poller", "poller", "--backend", url, env=env)
        procs.start("worker", "worker", "--backend", url, env=env)
        wait_for(lambda: direct.get(task.id).is_terminal, "the timed-out task", 90, 0.1)
        wall_s = time.monotonic() - t0
        done = direct.get(task.id)
    finally:
        direct.close()
    ledger = read_ledger(tmp_path / "ledger.txt")
    runs = sorted(ledger.executions, key=lambda e: e.start)
    kill_minus_timeout = [round(e.end - e.start - timeout, 3) for e in runs]
    gaps = [round(b.start - a.end, 3) for a, b in zip(runs, runs[1:], strict=False)]
    figures = report(tmp_path / "report.jsonl", "T13_timeout", None, api=None, wall_s=wall_s, accepted=1,
                     completed=0, lost=0 if done.status is TaskStatus.DEAD else 1,
                     dlq=int(done.status is TaskStatus.DEAD),
                     attempts=done.attempts, error=done.error, kill_minus_timeout_s=kill_minus_timeout,
                     retry_gaps_s=gaps)
    assert_passes(figures, procs.logs)
    assert done.status is TaskStatus.DEAD and done.attempts == 3, done
    assert (done.error or "").startswith("timeout"), done.error
    assert [e.attempt for e in runs] == [1, 2, 3]
    assert all(-0.05 <= k < 5.0 for k in kill_minus_timeout), kill_minus_timeout  # about 1 s, far from 10 s
    assert gaps[0] >= 0.15 and gaps[1] >= 0.3, gaps  # backoff 0.2 s then 0.4 s (lower bounds only)

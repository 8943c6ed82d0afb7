"""`recovery`: a worker killed with kill -9 mid-task, and a worker frozen past its lease.

Kill: a worker (concurrency C) takes C long `experiment.work` tasks, more wait queued, and once all C
run it gets SIGKILL, so it never settles or releases them. A second worker is started at once. The
lost tasks come back only when their leases expire and the poller takes them over (marking the
attempt `lost` in the task's history), so each should start again within lease + poll interval of the
kill (plus the task's 0.05 s retry delay). Stall: a worker is frozen with SIGSTOP while it runs its
tasks, for longer than the lease; another worker re-runs them; then the frozen one is resumed, finishes
its now stale attempts and tries to settle them, and the backend refuses (fencing: the lease token has
moved on). Every run of a task to completion appends a line to a ledger file, so duplicates executed
are counted whoever settled them; nothing may be lost: every task must end succeeded.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hexq.core.model import AttemptOutcome, Task, TaskStatus
from hexq.core.services import SubmitRequest
from hexq.functions.experiment import plots
from hexq.functions.experiment.lab import Lab, Processes, row
from hexq.functions.experiment.result import Result
from hexq.functions.experiment.tasks import WORK_RETRY

TITLE = "recovery: kill -9 a worker mid-task, freeze one past its lease; time to recover, duplicates, fencing"
ABOUT = __doc__.split("\n\n", 1)[1].strip() if __doc__ else ""


def sizes(quick: bool) -> dict[str, Any]:
    if quick:
        return {"concurrency": 4, "queued_extra": 4, "seconds": 1.5, "lease": 2.0, "poll_interval": 0.2,
                "stall_extra": 1.5, "retry_delay": WORK_RETRY.base}
    return {"concurrency": 8, "queued_extra": 16, "seconds": 3.0, "lease": 5.0, "poll_interval": 0.5,
            "stall_extra": 3.0, "retry_delay": WORK_RETRY.base}


async def run(lab: Lab, seed: int) -> Result:
    s = sizes(lab.options.quick)
    # INFO: each worker logs a `task fenced` line when the backend refuses its lease (counted afterwards)
    lease = ("--lease", str(s["lease"]), "--log-level", "INFO")
    ledger = lab.workdir / f"ledger-{lab.prefix}.txt"
    kill_q, stall_q = lab.queue("kill"), lab.queue("stall")
    complete = True
    events: dict[str, float] = {}
    async with lab.poller("--poll-interval", str(s["poll_interval"]), *lease):
        n = s["concurrency"] + s["queued_extra"]
        async with lab.workers([kill_q], 1, s["concurrency"], extra=lease, name="victim") as victim:
            await _submit(lab, kill_q, 0, n, s["seconds"], ledger)
            await _running_on(lab, kill_q, victim, s["concurrency"])
            events["kill"] = time.time()
            victim.kill(victim.children[0])
            async with lab.workers([kill_q], 1, n, extra=lease, name="survivor") as survivor:
                with lab.meter.phase("recovery: kill -9", n) as show:
                    complete &= await lab.wait_done([kill_q], n, lab.options.timeout, show, survivor.check)
        m = s["concurrency"]
        async with lab.workers([stall_q], 1, m, extra=lease, name="frozen") as frozen:
            await _submit(lab, stall_q, n, m, s["seconds"], ledger)
            await _running_on(lab, stall_q, frozen, m)
            frozen.pause(frozen.children[0])
            events["stop"] = time.time()
            try:
                async with lab.workers([stall_q], 1, m, extra=lease, name="rescuer") as rescuer:
                    with lab.meter.phase("recovery: frozen past the lease", m) as show:
                        complete &= await lab.wait_done([stall_q], m, lab.options.timeout, show, rescuer.check)
                    await asyncio.sleep(max(0.0, events["stop"] + s["lease"] + s["stall_extra"] - time.time()))
            finally:
                frozen.resume(frozen.children[0])
                events["resume"] = time.time()
            await asyncio.sleep(s["seconds"] + 1.0)  # its stale attempts finish and try to settle
    fenced = lab.fenced_in_logs()
    runs = _ledger(ledger)
    rows = [_row(t, "kill", events["kill"], runs) for t in await lab.read_back(kill_q)]
    rows += [_row(t, "stall", events["stop"], runs) for t in await lab.read_back(stall_q)]
    return _analyse(rows, s, complete, lab.notes, events, fenced)


async def _submit(lab: Lab, queue: str, first: int, count: int, seconds: float, ledger: Path) -> None:
    await lab.submit_all([SubmitRequest("experiment.work", {"seconds": seconds, "ledger": str(ledger), "i": first + i},
                                        queue=queue) for i in range(count)])


async def _running_on(lab: Lab, queue: str, workers: Processes, count: int, within: float = 30.0) -> None:
    """Until `count` tasks of `queue` run on the (only) worker of `workers`."""
    worker_id = workers.worker_id(workers.children[0])
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        tasks = await lab.read_back(queue)
        if sum(1 for t in tasks if t.status is TaskStatus.RUNNING and t.worker_id == worker_id) >= count:
            return
        workers.check()
        await asyncio.sleep(0.05)
    lab.notes.append(f"fewer than {count} tasks were running on {worker_id} after {within:g} s; went on anyway")


def _ledger(path: Path) -> Counter[int]:
    """How many times each task index ran to completion."""
    if not path.exists():
        return Counter()
    return Counter(int(line.split()[0]) for line in path.read_text().splitlines() if line.strip())


def _row(task: Task, phase: str, event: float, runs: Counter[int]) -> dict[str, Any]:
    lost = [a for a in task.history if a.outcome is AttemptOutcome.LOST]
    restart = None
    if lost:
        later = [a.started_at for a in task.history if a.number > lost[0].number and a.started_at is not None]
        restart = later[0] if later else task.started_at
    index = task.payload.get("i")
    return row(task, phase=phase, index=index, lost_attempts=len(lost),
               lost_started_at=lost[0].started_at if lost else None,
               lease_expired_at=lost[0].finished_at if lost else None,
               detected_after=round(lost[0].finished_at - event, 4) if lost and lost[0].finished_at else None,
               recovered_after=round(restart - event, 4) if restart is not None else None,
               executions=runs.get(index, 0) if isinstance(index, int) else 0)


def _analyse(rows: list[dict[str, Any]], s: dict[str, Any], complete: bool, notes: list[str],
             events: dict[str, float], fenced: dict[str, int]) -> Result:
    bound = s["lease"] + s["poll_interval"] + s["retry_delay"]
    phases: dict[str, Any] = {}
    for phase in ("kill", "stall"):
        mine = [r for r in rows if r["phase"] == phase]
        recovered = [r["recovered_after"] for r in mine if r["recovered_after"] is not None]
        phases[phase] = {
            "tasks": len(mine), "succeeded": sum(r["status"] == "succeeded" for r in mine),
            "lost_attempts": sum(r["lost_attempts"] for r in mine),
            "recovered_after_s": {"min": min(recovered, default=None), "max": max(recovered, default=None)},
            "detected_after_s_max": max((r["detected_after"] for r in mine if r["detected_after"] is not None),
                                        default=None),
            "executions": sum(r["executions"] for r in mine),
            "duplicates": sum(max(0, r["executions"] - 1) for r in mine)}
    kill, stall = phases["kill"], phases["stall"]
    headline: dict[str, float | None] = {
        "lost_tasks_recovered": kill["lost_attempts"], "recovery_max_s": kill["recovered_after_s"]["max"],
        "bound_s": round(bound, 3), "not_succeeded": sum(r["status"] != "succeeded" for r in rows),
        "duplicates_kill": kill["duplicates"], "duplicates_stall": stall["duplicates"],
        "fenced_heartbeats": fenced.get("heartbeat", 0), "fenced_settles": fenced.get("settle", 0)}
    return Result(rows, {"phases": phases, "bound_s": bound, "fenced": fenced,
                         "events": {k: round(v, 4) for k, v in events.items()}, "sizes": s}, headline, complete,
                  list(notes))


def figures(results: Sequence[Result]) -> list[plots.Figure]:
    first = results[0]
    s, bound = first.summary["sizes"], first.summary["bound_s"]

    def draw(axes: list[Any]) -> None:
        for ax, phase, event in zip(axes, ("kill", "stall"), ("kill -9", "SIGSTOP"), strict=True):
            mine = sorted((r for r in first.rows if r["phase"] == phase), key=lambda r: r["created_at"])
            base = first.summary["events"]["kill" if phase == "kill" else "stop"]
            labels = {"lost": "lost attempt, until its lease expired", "ok": "the attempt that succeeded"}
            for y, r in enumerate(mine):
                if r["lease_expired_at"] is not None:
                    ax.plot([(r["lost_started_at"] or base) - base, r["lease_expired_at"] - base], [y, y],
                            color="tab:red", linewidth=2, label=labels.pop("lost", None))
                if r["started_at"] is not None and r["finished_at"] is not None:
                    ax.plot([r["started_at"] - base, r["finished_at"] - base], [y, y], color="tab:green",
                            linewidth=4, alpha=0.7, label=labels.pop("ok", None))
            ax.axvline(0, color="black", linewidth=1, label=event)
            ax.axvline(bound, color="grey", linestyle="--", label=f"lease + poll + retry delay ({bound:g} s)")
            ax.set_xlabel(f"seconds since the {event}")
            ax.set_ylabel("task")
            ax.set_title(f"{phase}: lease {s['lease']:g} s, poll every {s['poll_interval']:g} s")
            ax.legend(fontsize="x-small", loc="lower right")
            ax.grid(True, alpha=0.3)

    return [plots.Figure("recovery_timeline.png", "Each task's lost attempt (red, up to its lease's expiry) and "
                         "the attempt that succeeded (green), relative to the kill and to the freeze", draw, panels=2)]


def findings(results: Sequence[Result]) -> list[str]:
    first = results[0]
    p, s, h = first.summary["phases"], first.summary["sizes"], first.headline
    kill, stall = p["kill"], p["stall"]
    return [f"Kill: {kill['tasks']} tasks, {kill['lost_attempts']} running on the killed worker. Their leases "
            f"expired at most {kill['detected_after_s_max']} s after the kill (lease {s['lease']:g} s) and they "
            f"started again {kill['recovered_after_s']['min']}–{kill['recovered_after_s']['max']} s after it, "
            f"against a bound of lease + poll interval + retry delay = {h['bound_s']} s. "
            f"{kill['succeeded']} of {kill['tasks']} succeeded; {kill['duplicates']} ran to completion twice "
            "(a killed attempt never completes, so none should).",
            f"Stall: {stall['tasks']} tasks on a worker frozen for {s['lease'] + s['stall_extra']:g} s; "
            f"{stall['lost_attempts']} attempts were taken back as lost and re-run elsewhere, "
            f"{stall['succeeded']} of {stall['tasks']} succeeded. When the frozen worker resumed, the backend "
            f"refused its stale leases (fencing): {h['fenced_heartbeats']} heartbeat(s) and {h['fenced_settles']} "
            f"settle(s) were rejected. A refused heartbeat stops the attempt (an async handler is cancelled), so it "
            f"may not complete; {stall['duplicates']} task(s) ran to completion twice. Either way a stale attempt "
            "cannot write its outcome: delivery is at least once, and each task's outcome is recorded once."]

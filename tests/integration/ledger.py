"""The crash tests' history and checker: Jepsen `total-queue` semantics over a ledger file.

The history has two halves. The client half is what the API answered: `accepted` maps every task id
answered 202 to its payload's `n`; `indeterminate` holds the n of submits whose answer never
arrived (they may or may not exist). The worker half is the ledger file that `ledger_tasks`
appends one line to per execution, and the tasks' final records read back from the API.

    lost        accepted but not succeeded                    must be 0
    unexpected  executed (in the ledger) but never accepted    must be 0
    duplicated  n executed more than once                     allowed only after a kill, and counted
    phantom     succeeded without any execution in the ledger  must be 0
    overrun     executed more often than the task's attempts   must be 0 (an execution nobody claimed)
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class Execution:
    """One ledger line: `n task_id attempt pid t_start t_end` (task_id and attempt may be "-")."""

    n: int
    task_id: str
    attempt: int | None
    pid: int
    start: float
    end: float

    def line(self) -> str:
        attempt = "-" if self.attempt is None else str(self.attempt)
        return f"{self.n} {self.task_id} {attempt} {self.pid} {self.start:.6f} {self.end:.6f}\n"


@dataclass(frozen=True, slots=True)
class Ledger:
    executions: list[Execution]
    torn: int = 0  # lines that do not parse (a write cut short); must be 0, since each line is one write


def parse_ledger(text: str) -> Ledger:
    executions: list[Execution] = []
    lines = text.split("\n")
    torn = 1 if lines[-1] else 0  # a last line without its newline was cut short, even if it parses
    for raw in lines[:-1]:
        try:
            n, task_id, attempt, pid, start, end = raw.split()
            executions.append(Execution(int(n), task_id, None if attempt == "-" else int(attempt), int(pid),
                                        float(start), float(end)))
        except ValueError:
            torn += 1
    return Ledger(executions, torn)


def read_ledger(path: Path) -> Ledger:
    return parse_ledger(path.read_text() if path.exists() else "")


@dataclass(frozen=True, slots=True)
class FinalTask:
    """What the backend says at the end: the fields the checker needs from a task record."""

    id: str
    n: int
    status: str
    attempts: int

    @classmethod
    def from_api(cls, task: Mapping[str, Any]) -> FinalTask:
        return cls(task["id"], int(task["payload"]["n"]), task["status"], int(task["attempts"]))


@dataclass
class Verdict:
    accepted: int
    completed: int
    lost: int
    duplicated: int
    duplicated_pct: float
    extra_executions: int
    unexpected: int
    phantom: int
    overrun: int
    torn: int
    dlq: int
    indeterminate: int
    killed: bool
    examples: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def problems(self) -> list[str]:
        found = [f"{name}={getattr(self, name)}" for name in ("lost", "unexpected", "phantom", "overrun", "torn")
                 if getattr(self, name)]
        if self.duplicated and not self.killed:
            found.append(f"duplicated={self.duplicated} without any kill")
        return found

    @property
    def ok(self) -> bool:
        return not self.problems

    def figures(self) -> dict[str, Any]:
        """The reporting-format figures (RELIABILITY.md), without the examples."""
        data = asdict(self)
        data.pop("examples")
        return data


def check(accepted: Mapping[str, int], final: Iterable[FinalTask], ledger: Ledger, *, killed: bool,
          indeterminate: Iterable[int] = (), examples: int = 10) -> Verdict:
    """Compare what the API accepted, what the backend says at the end, and what actually ran."""
    by_id = {task.id: task for task in final}
    runs = Counter(e.n for e in ledger.executions)
    accepted_n = set(accepted.values())
    maybe = set(indeterminate) - accepted_n

    completed = {i for i in accepted if i in by_id and by_id[i].status == "succeeded"}
    lost = sorted(set(accepted) - completed)
    unexpected = sorted(n for n in runs if n not in accepted_n and n not in maybe)
    duplicated = sorted(n for n, count in runs.items() if count > 1 and n in accepted_n)
    phantom = sorted(i for i in completed if runs[accepted[i]] == 0)
    overrun = sorted(i for i in accepted if i in by_id and runs[accepted[i]] > by_id[i].attempts)
    dlq = sum(1 for i in accepted if i in by_id and by_id[i].status == "dead")

    def status_of(task_id: str) -> str:
        return by_id[task_id].status if task_id in by_id else "missing"

    return Verdict(
        accepted=len(accepted),
        completed=len(completed),
        lost=len(lost),
        duplicated=len(duplicated),
        duplicated_pct=round(100.0 * len(duplicated) / len(accepted), 3) if accepted else 0.0,
        extra_executions=sum(runs[n] - 1 for n in duplicated),
        unexpected=len(unexpected),
        phantom=len(phantom),
        overrun=len(overrun),
        torn=ledger.torn,
        dlq=dlq,
        indeterminate=len(maybe),
        killed=killed,
        examples={
            "lost": [(i, accepted[i], status_of(i)) for i in lost[:examples]],
            "unexpected": unexpected[:examples],
            "duplicated": duplicated[:examples],
            "phantom": phantom[:examples],
            "overrun": overrun[:examples],
        },
    )


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def recovery_latencies(ledger: Ledger, victims: Iterable[int], killed_pid: int, kill_time: float) -> list[float]:
    """For each task in flight on the killed worker: kill -> the start of its next execution elsewhere."""
    firsts: dict[int, float] = {}
    for e in ledger.executions:
        if e.pid != killed_pid and e.start >= kill_time:
            firsts[e.n] = min(firsts.get(e.n, math.inf), e.start)
    return [firsts[n] - kill_time for n in victims if n in firsts]


def write_report(path: Path, figures: Mapping[str, Any]) -> str:
    """One JSON line, printed and written to `path` (the test's artifacts dir)."""
    line = json.dumps(figures, sort_keys=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(line + "\n")
    print(line)
    return line

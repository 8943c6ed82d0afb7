"""What one run of an experiment returns, and what an experiment module provides."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from hexq.functions.experiment.lab import Lab
from hexq.functions.experiment.plots import Figure


@dataclass
class Result:
    rows: list[dict[str, Any]]  # tasks.csv: one per task
    summary: dict[str, Any]  # summary.json: every derived figure
    headline: dict[str, float | None]  # the few figures of the end table, spread over repeats
    complete: bool = True  # False when a phase stopped at --timeout
    notes: list[str] = field(default_factory=list)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # more CSV files: <name>.csv


class Experiment(Protocol):
    TITLE: str
    ABOUT: str  # what it does and why, for report.md

    def sizes(self, quick: bool) -> dict[str, Any]: ...

    async def run(self, lab: Lab, seed: int) -> Result: ...

    def figures(self, results: Sequence[Result]) -> list[Figure]: ...

    def findings(self, results: Sequence[Result]) -> list[str]: ...

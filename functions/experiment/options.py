"""`hexq experiment` options, parsed into one frozen Options."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from hexq.core.errors import ConfigurationError

NAMES = ("priority", "scaling", "retries", "baseline", "load", "stress", "recovery")


@dataclass(frozen=True, slots=True)
class Options:
    name: str  # one of NAMES, "all" or "list"
    backend: str | None = None  # None: a temporary SQLite file
    out: Path = Path("experiments")
    quick: bool = False
    seed: int = 1
    repeat: int = 1
    json: bool = False
    timeout: float = 600.0  # each phase stops waiting after this long

    def __post_init__(self) -> None:
        if self.name not in (*NAMES, "all", "list"):
            raise ConfigurationError(f"experiment: NAME must be list, all or one of {', '.join(NAMES)}, "
                                     f"not {self.name!r}")
        if not 1 <= self.repeat <= 20:
            raise ConfigurationError(f"experiment: --repeat must be from 1 to 20, not {self.repeat}")
        if not self.timeout > 0:
            raise ConfigurationError(f"experiment: --timeout must be above 0, not {self.timeout}")

    def names(self) -> tuple[str, ...]:
        return NAMES if self.name == "all" else (self.name,)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("experiment_name", metavar="NAME", help=f"list, all, or one of: {', '.join(NAMES)}")
    add("--backend", dest="experiment_backend", metavar="URL",
        help="sqlite:///path.db, redis://127.0.0.1:6379/0, aws://... (default: a temporary SQLite file); "
             "shared between processes, so not memory://")
    add("--out", dest="experiment_out", type=Path, default=Path("experiments"), metavar="DIR",
        help="results go to DIR/NAME/<timestamp>/ (default ./experiments)")
    add("--quick", dest="experiment_quick", action="store_true",
        help="small sizes, each experiment under about 30 s (what the tests run)")
    add("--seed", dest="experiment_seed", type=int, default=1, metavar="N",
        help="seeds the workload: task mix, arrival times, which attempts fail (1)")
    add("--repeat", dest="experiment_repeat", type=int, default=1, metavar="N",
        help="run each experiment N times (seeds N, N+1, ...) to show the spread (1)")
    add("--timeout", dest="experiment_timeout", type=float, default=600.0, metavar="S",
        help="each phase stops waiting for its tasks after this long (600)")
    add("--json", dest="experiment_json", action="store_true", help="print the summaries as JSON")


def from_args(args: argparse.Namespace) -> Options:
    return Options(name=args.experiment_name, backend=args.experiment_backend, out=args.experiment_out,
                   quick=args.experiment_quick, seed=args.experiment_seed, repeat=args.experiment_repeat,
                   json=args.experiment_json, timeout=args.experiment_timeout)

"""The bench's command-line options, parsed into one frozen BenchOptions.

The bench does not take the common `--tasks MODULES` flag (it runs only the built-in noop task; how
many is `--count`), and it does not read HEXQ_BACKEND: a benchmark fills the backend with thousands
of noop tasks, so it only writes where `--backend` says, and otherwise into a temporary SQLite file.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from hexq.core.errors import ConfigurationError


@dataclass(frozen=True, slots=True)
class DrainSpec:
    """One drain row: `workers` processes, each running `concurrency` tasks at once (None: --concurrency)."""

    workers: int
    concurrency: int | None = None


PHASES = ("client", "http", "bulk", "drain", "latency", "serve")
SKIPPABLE = (*PHASES, "baselines")  # "baselines": hexq's phases only, without the plain-backend rows


@dataclass(frozen=True, slots=True)
class BenchOptions:
    backend: str | None = None  # None, "sqlite" or "sqlite://": a temporary SQLite file
    count: int = 5000
    workers: tuple[DrainSpec, ...] = (DrainSpec(2),)  # one drain row per entry
    concurrency: int = 200
    coroutines: int = 64  # the concurrent client phase: the figure, so no flag for it
    rate: float = 200.0
    duration: float = 5.0
    timeout: float = 30.0
    connections: int = 16
    chunk: int = 1000
    skip: frozenset[str] = frozenset()
    json: bool = False
    profile: str | None = None
    log_level: str = "INFO"  # the API server's, as `hexq serve` would log
    queues: int = 1  # the bulk and drain phases round robin over this many queues (spread.py)
    shards: int = 1  # ... or use one hot queue split in this many shards

    def __post_init__(self) -> None:
        for name, low in (("count", 1), ("concurrency", 1), ("coroutines", 1), ("connections", 1), ("chunk", 1)):
            if getattr(self, name) < low:
                raise ConfigurationError(f"bench: --{name} must be at least {low}, not {getattr(self, name)}")
        if not self.workers or min(min(w, c) for w, c in self.drains()) < 1:
            raise ConfigurationError("bench: --workers takes counts (and concurrencies) of at least 1")
        for name in ("rate", "duration", "timeout"):
            if not getattr(self, name) > 0:
                raise ConfigurationError(f"bench: --{name} must be above 0, not {getattr(self, name)}")
        if self.chunk > 1000:
            raise ConfigurationError(f"bench: --chunk must be at most 1000 (the bulk submit limit), not {self.chunk}")
        from hexq.functions.bench import spread  # not at import: it loads redis, which `hexq --help` need not

        spread.check(self.queues, self.shards)
        unknown = self.skip - set(SKIPPABLE)
        if unknown:
            raise ConfigurationError(f"bench: --skip takes {','.join(SKIPPABLE)}; unknown: {','.join(sorted(unknown))}")

    def drains(self) -> list[tuple[int, int]]:
        """(workers, concurrency) of each drain row."""
        return [(spec.workers, self.concurrency if spec.concurrency is None else spec.concurrency)
                for spec in self.workers]

    def runs(self, phase: str) -> bool:
        return phase not in self.skip

    @property
    def baselines(self) -> bool:
        return "baselines" not in self.skip

    @property
    def latency_tasks(self) -> int:
        return max(1, round(self.rate * self.duration))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--backend", dest="bench_backend", metavar="URL",
        help="memory://, sqlite:///path.db, redis://127.0.0.1:6379/0 (default: a temporary SQLite file)")
    add("-n", "--count", dest="bench_count", type=int, default=5000, metavar="N",
        help="tasks per enqueue phase and for each drain (5000)")
    add("--workers", dest="bench_workers", type=_drains, default=(DrainSpec(2),), metavar="W[xC][,...]",
        help="worker processes for the drain; several (1,2,4) run one drain each; WxC runs W workers of "
             "concurrency C, so 1x1 claims and settles one by one (2)")
    add("--concurrency", dest="bench_concurrency", type=int, default=200, metavar="C",
        help="tasks each worker runs at once (200: noop tasks, so this measures the queue)")
    add("--rate", dest="bench_rate", type=float, default=200.0, metavar="R",
        help="submits per second in the latency and serve phases (200)")
    add("--duration", dest="bench_duration", type=float, default=5.0, metavar="S",
        help="seconds the latency and serve phases submit for (5)")
    add("--timeout", dest="bench_timeout", type=float, default=30.0, metavar="S",
        help="each phase stops after this long and reports what it did (30)")
    add("--connections", dest="bench_connections", type=int, default=16, metavar="N",
        help="connections of the concurrent HTTP client (16)")
    add("--skip", dest="bench_skip", type=_phases, default=frozenset(), metavar="PHASES",
        help=f"comma-separated phases to leave out: {','.join(SKIPPABLE)}")
    add("--queues", dest="bench_queues", type=int, default=1, metavar="Q",
        help="the bulk and drain phases submit round robin over Q queues, bench-<i>.<j>, whose shard slots fall "
             "in Q equal slot ranges (one per master of a Q-master cluster), and every drain worker serves all Q; "
             "on redis+cluster:// without shards= the bench appends shards=per-queue, on one redis:// server it "
             "leaves the URL alone (1)")
    add("--shards", dest="bench_shards", type=int, default=1, metavar="N",
        help="the bulk and drain phases use one hot queue, bench, split in N shards: appends hot=bench:N (and "
             "shards=per-queue unless the URL has shards=) to a Redis URL; not on other backends (1)")
    add("--json", dest="bench_json", action="store_true", help="print one JSON object instead of tables")
    add("--cold-start", dest="bench_cold_start", action="store_true",
        help="instead of the phases: import-and-bootstrap time of each Lambda module per backend, and package size")
    add("--metrics-cost", dest="bench_metrics_cost", action="store_true",
        help="instead of the phases: what Prometheus metrics cost per task (the drain with the workers' metrics "
             "off, then on, and the observer alone)")
    add("--profile", dest="bench_profile", metavar="DIR",
        help="run the worker and HTTP server processes under cProfile, writing DIR/*.prof (main threads only: "
             "SQLite's work runs in threads, which need a sampling profiler such as py-spy)")


def from_args(args: argparse.Namespace, log_level: str = "INFO") -> BenchOptions:
    return BenchOptions(backend=args.bench_backend, count=args.bench_count, workers=args.bench_workers,
                        concurrency=args.bench_concurrency, rate=args.bench_rate,
                        duration=args.bench_duration, timeout=args.bench_timeout, connections=args.bench_connections,
                        skip=args.bench_skip, json=args.bench_json, profile=args.bench_profile, log_level=log_level,
                        queues=args.bench_queues, shards=args.bench_shards)


def _phases(raw: str) -> frozenset[str]:
    return frozenset(part.strip() for part in raw.split(",") if part.strip())


def _drains(raw: str) -> tuple[DrainSpec, ...]:
    try:
        return tuple(_drain(part.strip()) for part in raw.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--workers takes counts such as 2, 1,2,4 or 1,2,1x1, not {raw!r}") from None


def _drain(part: str) -> DrainSpec:
    workers, x, concurrency = part.partition("x")
    return DrainSpec(int(workers), int(concurrency) if x else None)

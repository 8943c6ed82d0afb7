"""`hexq breakers [open|close NAME]`: list the circuit breakers, or force one open or closed."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from hexq.functions.bootstrap import Container
from hexq.functions.settings import Settings

HELP = "list the circuit breakers (closed, open, half_open; their task types), or open or close one"


def add_arguments(p: argparse.ArgumentParser, adder: Any) -> None:
    """`adder` is the CLI's (functions/cli.py _adder), so the actions take the same settings flags."""
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add = adder(p.add_subparsers(title="actions", metavar="ACTION"), nested=True)  # no action: list them
    add("open", breaker_open, "force a breaker open: workers give its tasks back unrun, attempts unused, until "
        "it is closed").add_argument("name", help="the breaker's name: a task type's, or the one it shares")
    add("close", breaker_close, "close a breaker and forget what it counted").add_argument("name")


def breakers(settings: Settings, args: argparse.Namespace) -> int:
    async def run(container: Container) -> int:
        from hexq.functions.breaker_wire import breakers_to_dict

        listing = breakers_to_dict(await container.breakers.breakers())
        if args.json:
            print(json.dumps(listing, indent=2))
        else:
            print_breakers(listing["breakers"])
        return 0

    return _with_container(settings, run)


def breaker_open(settings: Settings, args: argparse.Namespace) -> int:
    async def run(container: Container) -> int:
        await container.breakers.open(args.name)
        print(f"opened breaker {args.name} (its tasks wait until it is closed)")
        return 0

    return _with_container(settings, run)


def breaker_close(settings: Settings, args: argparse.Namespace) -> int:
    async def run(container: Container) -> int:
        await container.breakers.close(args.name)
        print(f"closed breaker {args.name}")
        return 0

    return _with_container(settings, run)


def print_breakers(rows: Sequence[Mapping[str, Any]], now: float | None = None) -> None:
    from hexq.functions.tables import _console, _table

    if not rows:
        print("no circuit breakers (declare one with @task(..., breaker=Breaker(...)))")
        return
    now = time.time() if now is None else now
    table = _table(("breaker", "state", "failures", "probe in", "types"))
    for row in rows:
        state = row["state"] + (" (forced)" if row["forced"] else "")
        probe = "" if row["reopens_at"] is None else f"{max(0.0, row['reopens_at'] - now):.0f}s"
        failures = f"{row['failures']} in a row, {row['recent_failures']}/{row['recent']} recent"
        table.add_row(row["name"], state, failures, probe, ",".join(row["types"]))
    _console().print(table)


def _with_container(settings: Settings, run: Any) -> int:
    from hexq.functions.commands import _with_container as with_container

    return with_container(settings, run)

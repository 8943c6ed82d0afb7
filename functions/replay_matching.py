"""`hexq dead --replay-matching`: replay every dead task that matches --type, --queue, --search, --priority,
--since and --until, as the dashboard does: count first (a dry run, --dry-run stops there), confirm that count
(typed, or --yes), then replay in chunks of 500 (core.bulk.in_chunks) with a progress line, never more than
the confirmed count."""

from __future__ import annotations

import argparse
import sys

from hexq.core.bulk import CHUNK, MAX_LIMIT, Filter, in_chunks
from hexq.core.errors import ConfirmMismatch
from hexq.functions import filters
from hexq.functions.bootstrap import Container


async def replay_matching(container: Container, args: argparse.Namespace) -> int:
    where = Filter(type=args.type, queue=args.queue, search=args.search, **filters.from_args(args))
    bulk = container.bulk
    dry = await bulk.replay_matching(where, None, limit=MAX_LIMIT, confirm=None)
    more = "" if dry.complete else f" (the count stopped after {dry.scanned:,} examined: run again for the rest)"
    print(f"{dry.matched:,} dead task(s) match{more}")
    if args.dry_run or dry.matched == 0:
        return 0
    if not args.yes and not _confirmed(dry.matched):
        print("hexq: not confirmed: nothing replayed", file=sys.stderr)
        return 1

    def progress(done: int) -> None:
        print(f"replayed {done:,} of {dry.matched:,}", flush=True)

    try:
        await in_chunks(lambda left: bulk.replay_matching(where, None, limit=CHUNK, confirm=left), dry.matched,
                        progress)
    except ConfirmMismatch as exc:
        print(f"hexq: stopped: {exc}; nothing more was replayed", file=sys.stderr)
        return 1
    return 0


def _confirmed(total: int) -> bool:
    """The count typed back on stdin (a terminal, or a pipe: `echo 'replay 12' | hexq dead --replay-matching`)."""
    word = f"replay {total}"
    try:
        return input(f"type {word!r} to replay them (or run with --yes): ").strip() == word
    except EOFError:
        return False

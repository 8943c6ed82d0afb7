"""The Lua scripts: read from package data, registered once per client, run by EVALSHA.

Task scripts get _lib.lua (shared helpers and the documented KEYS/ARGV layout) prepended, since
Redis has no `require`. register_script only hashes the source; redis-py loads a script into the
server on its first NOSCRIPT reply (after a restart or failover too) and retries.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from importlib.resources import files
from typing import Any

from redis.commands.core import AsyncScript

TASK_SCRIPTS = ("enqueue", "claim", "extend", "settle", "transition", "promote", "reclaim", "purge", "query", "stats",
                "ratelimit", "now", "request_cancel")
STANDALONE_SCRIPTS = ("schedule_advance",)
LIBRARY = "_lib"


def _read(name: str) -> str:
    return (files("hexq.adapters.redis") / "scripts" / f"{name}.lua").read_text(encoding="utf-8")


@cache
def source(name: str) -> str:
    """The full text sent to Redis for script `name`."""
    if name in TASK_SCRIPTS:
        return f"{_read(LIBRARY)}\n-- ==== {name}.lua ====\n{_read(name)}"
    if name in STANDALONE_SCRIPTS:
        return _read(name)
    raise KeyError(f"no script {name!r}")


class Scripts:
    """Every script, registered on one client."""

    def __init__(self, client: Any) -> None:
        self._scripts: dict[str, AsyncScript] = {
            name: client.register_script(source(name)) for name in TASK_SCRIPTS + STANDALONE_SCRIPTS
        }

    async def run(self, name: str, keys: Sequence[str], args: Sequence[str | int | float]) -> Any:
        return await self._scripts[name](keys=keys, args=args)

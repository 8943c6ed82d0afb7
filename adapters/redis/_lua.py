"""The Lua scripts, run as a Redis 7 function library (FCALL) or as scripts (EVALSHA).

Redis has no `require`, so each task script is _lib.lua (the shared helpers and the documented key
layout), then the fragments it uses (_decide.lua, _settle.lua, _claim.lua), then its own file, which begins with
begin(KEYS, ARGV). The same files make one function library: the helpers once, and each script's
body as a function. Why both:

- FCALL of a library loaded once is the cheaper call: an EVALSHA runs the helpers' definitions again
  on every call (measured on Redis 7.0 here: about 11 µs of a lone call, 3 µs of a pipelined one).
- EVALSHA runs everywhere: Redis 6.2 has no functions, a user's ACL may not allow FUNCTION LOAD, and
  redis-py's cluster client asks the server for an FCALL's keys (COMMAND GETKEYS) before every call,
  which would cost a round trip. So a cluster client, or a server that answers "unknown command" or
  NOPERM, uses the scripts.

The library's name and its functions' names carry a hash of its text, so hexq versions with different
scripts never call each other's. It is loaded on the first "Function not found" (also after a restart
or failover that lost it), as redis-py loads a script on its first NOSCRIPT.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import cache
from importlib.resources import files
from typing import Any

from redis.commands.core import AsyncScript
from redis.exceptions import NoPermissionError, ResponseError

TASK_SCRIPTS = ("enqueue", "claim", "settle", "settle_and_claim", "extend", "transition", "promote", "reclaim",
                "purge", "query", "stats", "backlog", "ratelimit", "now", "request_cancel", "worker_beat",
                "worker_leave", "workers", "queue_pause", "queue_resume", "breakers", "breaker_put", "leases")
STANDALONE_SCRIPTS = ("schedule_advance",)
LIBRARY = "_lib"
FRAGMENTS = {"enqueue": ("_decide",), "settle": ("_settle",), "claim": ("_claim",),
             "settle_and_claim": ("_settle", "_claim")}
# Functions that only read. Redis refuses any other function while it is out of memory (a script run by
# EVALSHA only at its first write), and reads must go on answering then (RELIABILITY T9).
READ_ONLY = frozenset({"query", "stats", "backlog", "now", "workers", "breakers", "leases"})
_BEGIN = "begin(KEYS, ARGV)"


def _read(name: str) -> str:
    return (files("hexq.adapters.redis") / "scripts" / f"{name}.lua").read_text(encoding="utf-8")


def _parts(names: Sequence[str]) -> str:
    return "\n".join(f"-- ==== {name}.lua ====\n{_read(name)}" for name in names)


@cache
def source(name: str) -> str:
    """The text EVALSHA runs for script `name`."""
    if name in TASK_SCRIPTS:
        return f"{_parts([LIBRARY, *FRAGMENTS.get(name, ())])}\n{_BEGIN}\n{_parts([name])}"
    if name in STANDALONE_SCRIPTS:
        return _read(name)
    raise KeyError(f"no script {name!r}")


@cache
def library() -> tuple[str, str]:
    """(version, text) of the function library: every task script as function hexq_<version>_<name>."""
    fragments = sorted({part for parts in FRAGMENTS.values() for part in parts})  # none uses another
    functions = [f"redis.register_function{{function_name = 'hexq_%(version)s_{name}', flags = {{{_flags(name)}}}, "
                 f"callback = function(KEYS, ARGV)\n{_BEGIN}\n{_parts([name])}\nend}}" for name in TASK_SCRIPTS]
    body = "\n".join([_parts([LIBRARY, *fragments]), *functions])
    version = hashlib.sha1(body.encode()).hexdigest()[:12]
    return version, f"#!lua name=hexq_{version}\n" + body.replace("%(version)s", version)


def _flags(name: str) -> str:
    return "'no-writes'" if name in READ_ONLY else ""


class Scripts:
    """Every script, on one client. `functions`: try the function library first (one server); else
    EVALSHA only (a cluster)."""

    def __init__(self, client: Any, *, functions: bool) -> None:
        self._client = client
        self._scripts: dict[str, AsyncScript] = {
            name: client.register_script(source(name)) for name in TASK_SCRIPTS + STANDALONE_SCRIPTS
        }
        self._functions = functions
        self._version, self._library = library()

    @property
    def uses_functions(self) -> bool:
        return self._functions

    async def run(self, name: str, keys: Sequence[str], args: Sequence[str | bytes | int | float]) -> Any:
        if self._functions and name in TASK_SCRIPTS:
            function = f"hexq_{self._version}_{name}"
            try:
                return await self._client.fcall(function, len(keys), *keys, *args)
            except ResponseError as exc:  # refused before it ran: nothing was written
                if not await self._recover(exc):
                    raise
            if self._functions:
                return await self._client.fcall(function, len(keys), *keys, *args)
        return await self._scripts[name](keys=keys, args=args)

    async def _recover(self, exc: ResponseError) -> bool:
        """After an FCALL was refused: load the library, or give up on functions. False: not ours to handle."""
        if _unavailable(exc):
            self._functions = False
            return True
        if "Function not found" not in str(exc):
            return False
        try:
            await self._client.function_load(self._library)
        except ResponseError as load_error:
            if _unavailable(load_error):
                self._functions = False
            elif "already exists" not in str(load_error):  # another caller loaded it first: fine
                raise
        return True


def _unavailable(exc: ResponseError) -> bool:
    """Redis 6.2 (no FCALL / FUNCTION) or an ACL user who may not use them."""
    return isinstance(exc, NoPermissionError) or "unknown command" in str(exc).lower()

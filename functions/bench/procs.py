"""Child processes of the bench (workers, the HTTP server) and what /proc says about them.

Every child is started with its stderr in a log file in the bench's work directory, so a child that
fails is reported with the end of its log rather than silently, and is always stopped with SIGTERM
(then SIGKILL after a bounded wait) when its phase ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from hexq.core.errors import QueueError

_TICKS = os.sysconf("SC_CLK_TCK")


class BenchError(QueueError):
    """A bench phase could not run (a child failed to start, a server did not answer)."""


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a whole process (every thread), from /proc/<pid>/stat."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2:].split()  # the command name may hold spaces; it ends at the last ')'
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime: fields 14 and 15 of stat(5)


def cpu_wait_seconds(pid: int) -> float | None:
    """How long the process's threads have waited on a run queue for a core (schedstat's run_delay, summed
    over threads): on a shared machine, the time it was ready to run and something else had the cores.
    None where the kernel does not say (no schedstats) or the process is not ours to see."""
    try:
        return sum(int((entry / "schedstat").read_text().split()[1]) for entry in Path(f"/proc/{pid}/task").iterdir()
                   ) / 1e9
    except (OSError, IndexError, ValueError):
        return None


def is_process(pid: int, name: str) -> bool:
    """Whether `pid` on this machine is a process called `name` (a server's pid may be a container's own)."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == name
    except OSError:
        return False


def peak_rss_bytes(pid: int) -> int:
    """The process's peak resident set size (VmHWM: the kernel keeps the high-water mark)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


@dataclass
class Child:
    name: str
    process: asyncio.subprocess.Process
    log: Path
    first_line: str = ""
    ready_at: float | None = None  # time.monotonic() when it printed its first line
    cpu_at_ready: float = 0.0
    wait_at_ready: float | None = None  # cpu_wait_seconds then
    samples: dict[str, float] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


async def start(name: str, args: list[str], workdir: Path, profile: str | None = None) -> Child:
    """Start `python -m <args>` (under cProfile when `profile` names a directory)."""
    command = [sys.executable]
    if profile:
        await asyncio.to_thread(Path(profile).mkdir, parents=True, exist_ok=True)
        command += ["-m", "cProfile", "-o", str(Path(profile) / f"{name}.prof")]
    log = workdir / f"{name}.log"
    with log.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(*command, "-m", *args, stdin=asyncio.subprocess.DEVNULL,
                                                       stdout=asyncio.subprocess.PIPE, stderr=stderr)
    return Child(name, process, log)


async def wait_ready(children: list[Child], within: float) -> None:
    """Wait until each child printed its first line (a worker's banner, the server's port)."""
    try:
        async with asyncio.timeout(within):
            await asyncio.gather(*(_first_line(child) for child in children))
    except TimeoutError:
        late = [c.name for c in children if c.ready_at is None]
        raise BenchError(f"{', '.join(late)} not ready after {within:g}s") from None


async def _first_line(child: Child) -> None:
    assert child.process.stdout is not None
    line = await child.process.stdout.readline()
    if not line:
        code = await child.process.wait()
        raise BenchError(f"{child.name} exited with {code} before it was ready:\n{child.tail()}")
    child.first_line = line.decode(errors="replace").strip()
    child.ready_at = time.monotonic()
    child.cpu_at_ready = cpu_seconds(child.pid)
    child.wait_at_ready = cpu_wait_seconds(child.pid)


def check_alive(children: list[Child]) -> None:
    for child in children:
        if child.process.returncode is not None:
            raise BenchError(f"{child.name} exited with {child.process.returncode}:\n{child.tail()}")


async def stop(children: list[Child], within: float) -> None:
    """SIGTERM every child, wait up to `within` seconds, then SIGKILL what is left. Never raises."""
    for child in children:
        if child.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(signal.SIGTERM)
    waits = [asyncio.create_task(child.process.wait()) for child in children]
    _, pending = await asyncio.wait(waits, timeout=within) if waits else (set(), set())
    for child in children:
        if child.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                child.process.kill()
    await asyncio.gather(*pending, return_exceptions=True)
    for child in children:  # read the pipe to its end, so its transport is closed, not left for the GC
        if child.process.stdout is not None:
            with contextlib.suppress(Exception):
                await child.process.stdout.read()


def sample(child: Child, key: str) -> None:
    """Record the child's CPU seconds under `key` (and its wait for a core under wait_<key>), and its peak RSS
    so far."""
    with contextlib.suppress(OSError):
        child.samples[key] = cpu_seconds(child.pid)
        child.samples["peak_rss"] = float(peak_rss_bytes(child.pid))
    wait = cpu_wait_seconds(child.pid)
    if wait is not None:
        child.samples[f"wait_{key}"] = wait

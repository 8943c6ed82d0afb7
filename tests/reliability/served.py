"""A real `hexq serve` process for the reliability tests: started on a free port, waited for until
/healthz answers, stopped with SIGTERM (killed if it hangs)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from processes import stop, wait_healthy


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")


@contextmanager
def hexq_serve(tmp: Path, *, env: dict[str, str] | None = None, args: tuple[str, ...] = ()) -> Iterator[Served]:
    out = tmp / "serve.out"
    environ = {**os.environ, "HEXQ_BACKEND": f"sqlite:///{tmp}/hexq.db", "HEXQ_LOG_LEVEL": "WARNING",
               **(env or {})}
    with out.open("wb") as sink:
        process = subprocess.Popen([sys.executable, "-m", "hexq.functions.cli", "serve", "--port", "0", *args],
                                   stdout=sink, stderr=subprocess.STDOUT, env=environ, cwd=tmp)
    try:
        deadline = time.monotonic() + 60
        url = None
        while url is None:
            text = out.read_text(errors="replace")
            for line in text.splitlines():
                if line.startswith("hexq serving on "):
                    url = line.split()[3]
            if process.poll() is not None:
                raise AssertionError(f"hexq serve exited {process.returncode}:\n{text}")
            if time.monotonic() > deadline:
                raise AssertionError(f"hexq serve did not start:\n{text}")
            time.sleep(0.05)
        # The socket is bound before uvicorn listens on it.
        wait_healthy(process, url, lambda: out.read_text(errors="replace"), max(1.0, deadline - time.monotonic()))
        yield Served(process, url, out)
    finally:
        stop(process)

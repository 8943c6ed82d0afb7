"""A minimal HTTP/1.1 keep-alive client for the concurrent HTTP phases: one fixed POST, over and over.

Why not httpx.AsyncClient: on the machines we measured, it spends 2-4 ms of CPU per request, several
times what the server spends, so a concurrent phase driven by it measures httpx. This client
writes the request in one send and reads the answer by Content-Length; it costs ~0.2 ms.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from types import TracebackType

from hexq.functions.bench.procs import BenchError

_Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]
Post = Callable[[], Awaitable[None]]


def post_request(path: str, body: bytes) -> bytes:
    head = (f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n")
    return head.encode() + body


class Connections:
    """`count` kept-alive connections; post() takes a free one per request, so `count` callers at once never
    wait for one (the concurrent phase runs exactly that many)."""

    def __init__(self, port: int, count: int) -> None:
        self._port = port
        self._count = count
        self._free: deque[_Stream] = deque()
        self._all: list[_Stream] = []

    async def __aenter__(self) -> Connections:
        for _ in range(self._count):  # asyncio sets TCP_NODELAY itself
            self._all.append(await asyncio.open_connection("127.0.0.1", self._port))
        self._free.extend(self._all)
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        for _, writer in self._all:
            writer.close()
        for _, writer in self._all:
            try:
                await writer.wait_closed()
            except OSError:
                pass

    def post(self, request: bytes) -> Post:
        async def one() -> None:
            reader, writer = stream = self._free.popleft()
            writer.write(request)
            status, length = _head(await reader.readuntil(b"\r\n\r\n"))
            answer = await reader.readexactly(length)
            self._free.append(stream)  # only after a whole answer: a failed connection is not reused
            if status != 202:
                raise BenchError(f"POST answered {status}: {answer[:300].decode(errors='replace')}")

        return one


def _head(head: bytes) -> tuple[int, int]:
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            return status, int(value)
    raise BenchError(f"an answer without Content-Length: {lines[0]!r}")

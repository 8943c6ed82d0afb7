"""A minimal HTTP/1.1 keep-alive client for the concurrent HTTP phase: one fixed POST, over and over.

Why not httpx.AsyncClient: on the machines we measured, it spends 2-4 ms of CPU per request, several
times what the server spends, so a concurrent phase driven by it measures httpx. This client
writes the request in one send and reads the answer by Content-Length; it costs ~0.2 ms.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from hexq.functions.bench.procs import BenchError


def post_request(path: str, body: bytes) -> bytes:
    head = (f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n")
    return head.encode() + body


async def post_loop(port: int, request: bytes, more: Callable[[], bool], done: Callable[[], None]) -> None:
    """On one connection: send `request` while more() says so; call done() after each 202."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)  # asyncio sets TCP_NODELAY itself
    try:
        while more():
            writer.write(request)
            status, length = _head(await reader.readuntil(b"\r\n\r\n"))
            body = await reader.readexactly(length)
            if status != 202:
                raise BenchError(f"POST answered {status}: {body[:300].decode(errors='replace')}")
            done()
    finally:
        writer.close()
        await writer.wait_closed()


def _head(head: bytes) -> tuple[int, int]:
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            return status, int(value)
    raise BenchError(f"an answer without Content-Length: {lines[0]!r}")

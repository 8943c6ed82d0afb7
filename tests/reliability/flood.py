"""A lean HTTP/1.1 load generator for bursts (T22): keep-alive connections on asyncio streams.

httpx.AsyncClient spends 5-12 ms of CPU per request with 200 connections open (measured on the 2-core CI
box), so with it the client, not the server, sets the pace and a rate-limited key is never over its quota.
This sends prebuilt request bytes and reads only the status line, the headers it needs and the body, at
about a tenth of the cost. The calm tenant's requests in T22 still go through httpx.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Results:
    statuses: Counter[int] = field(default_factory=Counter)
    retry_afters: list[int] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)  # the JSON "error" code of each non-2xx answer


def request_bytes(url: str, path: str, body: Any, headers: dict[str, str]) -> bytes:
    host = urlsplit(url).netloc
    payload = json.dumps(body).encode()
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", "Content-Type: application/json",
             f"Content-Length: {len(payload)}", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    return "\r\n".join(lines).encode() + payload


async def _read(reader: asyncio.StreamReader, results: Results) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in header_lines if line)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    results.statuses[status] += 1
    if status >= 300:
        results.errors[str(json.loads(body).get("error"))] += 1
    if "retry-after" in headers:
        results.retry_afters.append(int(headers["retry-after"]))


async def flood(url: str, request: bytes, total: int, concurrency: int) -> Results:
    """Send `request` `total` times over `concurrency` keep-alive connections, one request in flight on
    each (no pipelining), and count the answers."""
    parts = urlsplit(url)
    results = Results()
    left = [total]

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        try:
            while left[0] > 0:
                left[0] -= 1
                writer.write(request)
                await _read(reader, results)
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(concurrency)))
    return results

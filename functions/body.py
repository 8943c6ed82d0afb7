"""Request bodies: read under a size cap while streaming, then parse as exactly one JSON object.

Everything a client can put in a body ends here as a 400 or 413, never as an exception
further in: bad UTF-8, bad syntax, NaN/Infinity, numbers out of float range, over-long
integers, unpaired surrogates, and nesting deep enough to exhaust the stack.

Bodies are parsed by orjson, which refuses all of those itself, at a fraction of the json module's
cost. One exception: orjson reads an integer past 64 bits as a float (losing digits, or refusing it as
infinite), so a body with a digit run that long goes through the json module, which keeps it exact.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request

from hexq.functions.errors import BadJSON, BodyTooLarge

MAX_DEPTH = 100
# What may not fit orjson's 64-bit integers: 20 digits (past 2**64 - 1), or 19 after a minus (past -2**63).
_LONG_NUMBER = re.compile(rb"\d{20}|-\d{19}")


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    return parse_object(await read_body(request, limit))


async def read_body(request: Request, limit: int) -> bytes:
    """The body, counting the bytes actually received: Content-Length only allows an early no."""
    declared = _content_length(request)
    if declared is not None and declared > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    receive = request.receive
    while True:  # Request.stream(), without its async generator: a submit's body is one message
        message = await receive()
        if message["type"] != "http.request":  # http.disconnect: what Request.stream() raises then
            raise ClientDisconnect()
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:  # stop reading here: the rest of the body is never buffered
            raise _too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def parse_object(raw: bytes) -> dict[str, Any]:
    if _LONG_NUMBER.search(raw):
        value = _parse_exactly(raw)
    else:
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise _bad_json(raw, str(exc)) from None
    # Only a body with more than MAX_DEPTH brackets can nest that deep: most are never walked.
    if raw.count(b"{") + raw.count(b"[") > MAX_DEPTH:
        _check_depth(value)
    if not isinstance(value, dict):
        raise BadJSON(f"the body must be a JSON object, not {_json_type(value)}")
    return value


def _bad_json(raw: bytes, reason: str) -> BadJSON:
    if not raw.strip():
        return BadJSON("the body is empty; send a JSON object")
    if reason.startswith("depth limit exceeded"):
        return _too_deep()
    return BadJSON(f"the body is not valid JSON: {reason}")


def _parse_exactly(raw: bytes) -> Any:
    """The json module's parse, for bodies with long integers (which it keeps exact)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadJSON(f"the body is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:
        raise _too_deep() from None
    except ValueError as exc:  # JSONDecodeError, and our own refusals of NaN, 1e999 and huge integers
        raise BadJSON(f"the body is not valid JSON: {exc}") from None
    _check_depth(value)
    _check_text(value)
    return value


def _content_length(request: Request) -> int | None:
    try:
        return int(request.headers.get("content-length", ""))
    except ValueError:
        return None  # absent or malformed: the streamed count decides


def _too_large(limit: int) -> BodyTooLarge:
    return BodyTooLarge(f"the body is larger than {limit} bytes", {"limit": limit})


def _too_deep() -> BadJSON:
    return BadJSON(f"the JSON is nested more than {MAX_DEPTH} levels deep", {"max_depth": MAX_DEPTH})


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def _check_depth(value: Any) -> None:
    # Iterative, so checking depth cannot itself run out of stack.
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > MAX_DEPTH:
            raise _too_deep()
        stack.extend((child, depth + 1) for child in children)


def _check_text(value: Any) -> None:
    # "\ud800" escapes decode to unpaired surrogates, which no UTF-8 response or store can hold.
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise BadJSON("the JSON contains an unpaired UTF-16 surrogate escape") from None


def _json_type(value: Any) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)

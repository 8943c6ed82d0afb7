"""Payloads and results to and from the JSON text SQLite stores: orjson where it gives exactly what the
standard library would, the standard library everywhere else.

orjson is 5-10 times faster, but it differs on a few values, and those go through `json` instead, so a
stored value reads back as it did before:
- dumps: integers past 64 bits, non-string keys, lone surrogates, deep nesting and unknown types make
  orjson raise (JSONEncodeError is a TypeError); NaN and infinity it writes as null, so output with a
  null in it is written again by `json` (which writes NaN, as older versions did);
- loads: see hexq.adapters.jsontext (shared with Redis): integers past 64 bits orjson turns into floats;
  NaN, 1e400 and escaped lone surrogates make it raise.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from hexq.adapters import jsontext

_ENCODER = json.JSONEncoder(separators=(",", ":"))
# The types orjson would serialize where json raises TypeError go to json, to raise there.
_STRICT = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_SUBCLASS
EMPTY = "{}"


def dumps(value: Any) -> str:
    if type(value) is dict and not value:  # the common payload, without a call into either library
        return EMPTY
    try:
        text = orjson.dumps(value, option=_STRICT)
    except TypeError:
        return _ENCODER.encode(value)
    if b"null" in text:  # None, or a NaN/infinity that orjson wrote as null
        return _ENCODER.encode(value)
    return text.decode()


def loads(text: str) -> Any:
    return {} if text == EMPTY else jsontext.loads(text)

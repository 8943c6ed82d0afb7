"""Reading stored JSON text with orjson, except where orjson would not give back what was written.

orjson reads an integer past what 64 bits hold (above 2**64 - 1, or below -2**63) as a float, and refuses
NaN, 1e400 and escaped lone surrogates: such text goes to the standard library. Shared by the adapters
that store JSON text (SQLite, Redis), so that they agree on which text that is.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

# 20 digits may exceed 2**64 - 1, and a minus with 19 may be below -2**63: orjson makes either a float.
LONG_NUMBER = re.compile(r"\d{20}|-\d{19}")


def loads(text: str) -> Any:
    if LONG_NUMBER.search(text) is None:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)

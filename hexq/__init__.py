"""hexq: a distributed task queue built as serverless-style functions over a pluggable backend.

The code lives in hexq.core (the domain), hexq.adapters (the backends) and hexq.functions (entry
points and the composition root).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hexq")
except PackageNotFoundError:  # a checkout that was never installed
    __version__ = "0+unknown"

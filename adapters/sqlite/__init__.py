"""SQLite backend: `sqlite:///hexq.db`, the embedded default."""

from __future__ import annotations

from hexq.adapters.sqlite.backend import SQLiteBackend

__all__ = ["SQLiteBackend"]

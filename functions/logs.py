"""Logging for every entry point: one JSON object per line on stderr.

Each line has ts, level, logger and message, plus whatever the call passed as `extra`
(`log.info("settled", extra={"task_id": t.id})`), so task ids are searchable fields, not text.
Nothing logs a line per HTTP request unless HEXQ_ACCESS_LOG asks for one (functions/serve.py): at a
few hundred thousand requests a minute, formatting them would cost the API more than serving them.
"""

from __future__ import annotations

import json as _json
import logging
import sys
import time

import orjson

from hexq.core.errors import ConfigurationError

# Attributes every LogRecord has; anything else on a record came in through `extra`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName",
                                                                                 "color_message"}


class JSONFormatter(logging.Formatter):
    """One JSON object per record. Task events make this a per-task path (two lines per task on a worker), so
    it is kept cheap: the timestamp's seconds are formatted once per second, and orjson writes the line."""

    _second = -1
    _prefix = ""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": self._timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key[0] != "_":
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        try:
            return orjson.dumps(line, default=str).decode()
        except (TypeError, orjson.JSONEncodeError):  # an integer past 64 bits, a lone surrogate
            return _json.dumps(line, default=str)

    def _timestamp(self, created: float) -> str:
        """ISO-8601 in UTC with milliseconds, as datetime.isoformat(timespec="milliseconds") writes it."""
        second = int(created)
        if second != self._second:
            self._second, self._prefix = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{int((created - second) * 1000):03d}+00:00"


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is at the time (test runners swap it), like logging's lastResort."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self) -> object:
        return sys.stderr


def configure_logging(level: str = "INFO", json: bool = True) -> None:
    """Send all logging (hexq's, uvicorn's, libraries') to stderr at `level`. Calling it again replaces
    the handler it installed before; handlers someone else put on the root logger are left alone."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ConfigurationError(f"HEXQ_LOG_LEVEL has value {level!r}; use DEBUG, INFO, WARNING or ERROR")
    handler = _Stderr()
    handler.setFormatter(JSONFormatter() if json else logging.Formatter("%(asctime)s %(levelname)s %(name)s: "
                                                                         "%(message)s"))
    # No line hexq writes shows the caller's file and line, the thread or the process, so records need not
    # find them: the logging HOWTO's "Optimization" settings. They halve the cost of a record, which matters
    # now that a worker writes two per task (task events).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Stderr)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)

"""Logging set-up, as uvicorn users know it: a level, a configuration file, JSON lines.

Every fastws log record goes through the "fastws" logger and its children: "fastws.access"
carries the access log (one line per connection, see server.access). `configure` is what
the ``fastws`` command calls before it serves:

- no file: one stderr handler on "fastws" at `level`, in plain text or JSON lines;
- `config_file` ending in .json: a `logging.config.dictConfig` dictionary; anything else an
  INI file for `logging.config.fileConfig`. The file then decides handlers, formats and
  levels (`level` and `fmt` are not applied); loggers that exist already stay enabled
  unless the file says ``"disable_existing_loggers": true``.
"""

from __future__ import annotations

import configparser
import json
import logging
import logging.config
import sys
import time
from typing import Any

__all__ = ["ACCESS_LOGGER", "LOG_FORMAT", "JSONFormatter", "StderrHandler", "configure"]

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
ACCESS_LOGGER = "fastws.access"

# What a LogRecord always has: anything else on it came from `extra=` and goes into JSON.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class StderrHandler(logging.StreamHandler):
    """Marks the handler `configure` installed, so configuring again replaces it."""


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time (ISO 8601, UTC), level, logger, message, the record's
    `extra` fields (the access log's client, path, status, ...) and any exception text."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(level: str = "info", config_file: str | None = None, fmt: str = "text") -> None:
    """Set up fastws' logging (see the module docstring); raises ValueError naming the file
    when it cannot be read or applied."""
    logger = logging.getLogger("fastws")
    for old in [h for h in logger.handlers if isinstance(h, StderrHandler)]:
        logger.removeHandler(old)
    if config_file is not None:
        _load(config_file)
        return
    handler = StderrHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else logging.Formatter(LOG_FORMAT))
    logger.addHandler(handler)
    logger.setLevel(level.upper())


def _load(path: str) -> None:
    try:
        if path.endswith(".json"):
            with open(path, encoding="utf-8") as file:
                settings = json.load(file)
            if not isinstance(settings, dict):
                raise ValueError("expected a JSON object (a logging.config.dictConfig dict)")
            settings.setdefault("disable_existing_loggers", False)
            logging.config.dictConfig(settings)
        else:
            logging.config.fileConfig(path, disable_existing_loggers=False)
    except (OSError, ValueError, TypeError, KeyError, AttributeError, ImportError) as exc:
        raise ValueError(f"cannot use log config {path!r}: {exc or type(exc).__name__}") from None
    except configparser.Error as exc:
        raise ValueError(f"cannot use log config {path!r}: {exc}") from None

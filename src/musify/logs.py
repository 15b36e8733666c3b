"""Logging, configured once per process by the CLI (``configure``).

Musify's modules log through ``logging.getLogger("musify.<module>")`` and never
configure anything themselves: a library user keeps their own logging. The CLI sends
Musify's records to stderr at ``MUSIFY_LOG_LEVEL`` (``--log-level``; info by default),
as human lines or, with ``MUSIFY_LOG_FORMAT=json``, one JSON object per line for log
shippers. Other libraries' records (py4j, urllib3, Airflow's clients) pass at warning
and above only: their info lines are noise to a Musify user.

Standard library only: ``musify.settings`` imports the level and format names, and an
orchestrator's own virtual environment reads the stream's status with just those.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any, Final

LEVELS: Final = ("debug", "info", "warning", "error")
FORMATS: Final = ("text", "json")

#: The attributes every LogRecord has; anything else came in ``extra=`` and is data.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
_HANDLER_NAME = "musify-cli"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message and the ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str, ensure_ascii=False, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """``12:00:01 info musify.batch: message`` (the ``musify.`` prefix dropped)."""

    def format(self, record: logging.LogRecord) -> str:
        at = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        name = record.name.removeprefix("musify.")
        line = f"{at} {record.levelname.lower()} {name}: {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure(level: str = "info", fmt: str = "text", stream: IO[str] | None = None) -> None:
    """Send Musify's records at ``level`` and up to ``stream`` (stderr) in ``fmt``.
    Idempotent: a second call replaces the first one's handler."""
    if level not in LEVELS:
        raise ValueError(f"log level {level!r}: expected one of {', '.join(LEVELS)}")
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r}: expected one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("musify").setLevel(level.upper())
    logging.captureWarnings(True)


__all__ = ["FORMATS", "LEVELS", "JsonFormatter", "TextFormatter", "configure"]

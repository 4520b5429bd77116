"""Log output: readable by default, one JSON object per line when asked.

A log line about a message carries its context in ``extra={"mcp": {...}}``
(``message_id``, ``type``, ``route``, ``trace_id``, ...); both formats print it,
so a message's trace can be found in Jaeger from any log line about it.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

__all__ = ["AMQP_LOGGERS", "FORMATS", "JsonFormatter", "TextFormatter", "configure", "context"]

FORMATS = ("text", "json")
AMQP_LOGGERS = ("aiormq", "aio_pika", "pamqp")
_TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def context(message_id: str | None, message_type: str | None = None, *,
            trace_id: str | None = None, **more: Any) -> dict[str, Any]:
    """``extra=`` for a log call about one message."""
    fields = {"message_id": message_id, "type": message_type, "trace_id": trace_id, **more}
    return {"mcp": {k: v for k, v in fields.items() if v is not None}}


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message [message_id=… type=… route=… trace_id=…]``."""

    def __init__(self) -> None:
        super().__init__(_TEXT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = getattr(record, "mcp", None)
        if fields:
            line += " [" + " ".join(f"{k}={v}" for k, v in fields.items()) + "]"
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the message context."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "mcp", None) or {})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(level: str = "INFO", fmt: str = "text") -> None:
    """Install the chosen formatter on the root logger; quiet the AMQP clients."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The AMQP clients log every failed connect and lost connection at ERROR with a
    # traceback; the router and the CLI say the same in one line of their own
    # (what happened, what to do), so theirs show only when debugging.
    quiet = logging.DEBUG if root.level <= logging.DEBUG else logging.CRITICAL + 1
    for name in AMQP_LOGGERS:
        logging.getLogger(name).setLevel(quiet)

"""Logging: one JSON object per line (``server.log_format: json``, the default) or plain text.

Every log record — the gateway's, uvicorn's and the supervisor's — goes through one handler
on stderr. The gateway writes one ``seekstack.access`` line per request with its request id,
trace id, route, status, model, tokens and latency: metadata only. No log line carries
prompt or answer text; a test sends a unique prompt and searches the log for it.
"""

from __future__ import annotations

import atexit
import logging
import queue
import sys
from logging.handlers import QueueHandler, QueueListener
from datetime import datetime, timezone
from typing import Any

import orjson

# LogRecord attributes that are not "extra" fields.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName", "color_message"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return orjson.dumps(entry, default=str).decode()


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class TextFormatter(logging.Formatter):
    """The text format, one line per record: line breaks and other control characters in a
    message (which may carry what a client sent) are escaped, so nobody can forge a log line."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        head, _, trace = text.partition("\nTraceback")
        return escape_controls(head) + ("\nTraceback" + trace if trace else "")


_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7f) if c != 0x09}


def escape_controls(text: str) -> str:
    return text.translate(_CONTROLS)


def configure_logging(level: str, fmt: str) -> None:
    """Log to stderr from a background thread: the event loop only queues records (the write
    to a pipe costs more than the request path can spare)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter(TEXT_FORMAT))
    records: queue.SimpleQueue = queue.SimpleQueue()
    listener = QueueListener(records, handler)
    listener.start()
    atexit.register(listener.stop)  # drains what is queued
    root = logging.getLogger()
    root.handlers[:] = [_Queue(records)]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):  # through our handler, not uvicorn's own
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per engine call/heartbeat is noise
    logging.getLogger("opentelemetry").setLevel(logging.WARNING)


class _Queue(QueueHandler):
    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        """Hand the record over as is (the listener formats it); only resolve the message."""
        record.msg, record.args = record.getMessage(), None
        if record.exc_info:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        return record


# uvicorn.Config(log_config=...) — leave logging as configure_logging set it.
UVICORN_LOG_CONFIG: dict[str, Any] = {"version": 1, "disable_existing_loggers": False}

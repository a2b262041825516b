"""Log lines of the server: plain text for people, JSON lines for log collectors.

Every record carries the id of the request it was written for (``request_id``, set by the
request middleware in a context variable, so service code logging deep down carries it too).
Fields passed with ``extra=`` (owner, ip, range, revision, duration_ms, ...) become JSON members,
or ``key=value`` pairs after the message in text.
"""

from __future__ import annotations

import logging
import logging.config
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

LogFormat = Literal["text", "json"]

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

# Attributes every LogRecord has; anything else on a record came from ``extra=``, except
# ``color_message``, uvicorn's copy of its message in terminal colours.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


def fields(record: logging.LogRecord) -> dict[str, Any]:
    """Return the structured fields of a record: its ``extra=`` members and the request id."""
    extra = {k: v for k, v in vars(record).items() if k not in _STANDARD and v is not None}
    rid = extra.pop("request_id", None) or request_id.get()
    return {"request_id": rid, **extra} if rid else extra


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, then the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **fields(record),
        }
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(document, default=str).decode()


class TextFormatter(logging.Formatter):
    """``LEVEL logger: message key=value ...``."""

    def format(self, record: logging.LogRecord) -> str:
        pairs = " ".join(f"{k}={v}" for k, v in fields(record).items())
        line = f"{record.levelname} {record.name}: {record.getMessage()}"
        line = f"{line} {pairs}" if pairs else line
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


def logging_config(level: str = "info", log_format: LogFormat = "text") -> dict[str, Any]:
    """Return the ``logging.config.dictConfig`` of the server: every logger's records to stderr
    in ``log_format`` at ``level`` and above. Uvicorn applies it in each worker process too."""
    formatter = JsonFormatter if log_format == "json" else TextFormatter
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"allocator": {"()": f"{formatter.__module__}.{formatter.__qualname__}"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "allocator",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["stderr"], "level": level.upper()},
        # The server's own request line replaces uvicorn's access line; pgserver's chatter is
        # kept to warnings.
        "loggers": {
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.access": {"level": "WARNING"},
            "pgserver": {"level": "WARNING"},
        },
    }


def configure_logging(level: str = "info", log_format: LogFormat = "text") -> None:
    """Apply ``logging_config`` to this process."""
    logging.config.dictConfig(logging_config(level, log_format))

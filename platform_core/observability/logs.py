"""Structured logs: with ``LOG_FORMAT=json`` one JSON object per line, the invocation's ids on
every line about an invocation.

The service binds an ``InvocationLog`` to the invocation's task (a context variable, inherited by
every task it starts); ``InvocationFilter`` copies its ids onto each record logged meanwhile, and
``JsonFormatter`` writes them out. The default text format appends them in brackets.
"""

from __future__ import annotations

import contextvars
import json
import logging
import time
import traceback
from dataclasses import dataclass
from typing import Any

# The fields a record about an invocation carries (also the JSON keys).
FIELDS = ("invocation_id", "trace_id", "tenant_id", "worker_id", "plugin")


@dataclass(slots=True)
class InvocationLog:
    """The ids of the invocation being served; ``worker_id`` is filled in once a worker is known."""

    invocation_id: str
    tenant_id: str
    trace_id: str = ""
    worker_id: str = ""
    plugin: str = ""
    # Set when the invocation has been answered: tasks it started (and that outlive it) stop
    # speaking in its name.
    ended: bool = False


current: contextvars.ContextVar[InvocationLog | None] = contextvars.ContextVar("invocation_log", default=None)


def invocation_bind(*, invocation_id: str, tenant_id: str, trace_id: str = "", plugin: str = "") -> InvocationLog:
    """Mark the current task (and those it starts) as serving this invocation."""
    bound = InvocationLog(invocation_id, tenant_id, trace_id, "", plugin)
    current.set(bound)
    return bound


class InvocationFilter(logging.Filter):
    """Adds the current invocation's ids to every record (empty strings outside an invocation)."""

    def filter(self, record: logging.LogRecord) -> bool:
        bound = current.get()
        if bound is not None and not bound.ended:
            for name in FIELDS:
                if not hasattr(record, name):
                    setattr(record, name, getattr(bound, name))
        return True


# LogRecord's own attributes: everything else on a record came as ``extra=`` and is written out.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the invocation's
    ids when there is one, ``extra`` fields, and the exception's traceback as one string."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_") and value not in ("", None):
                entry[key] = value if isinstance(value, str | int | float | bool | list | dict) else str(value)
        if record.exc_info:
            entry["exception"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, default=str, ensure_ascii=False)


def _iso(created: float) -> str:
    seconds = int(created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int((created - seconds) * 1000):03d}Z"


class TextFormatter(logging.Formatter):
    """The readable default, with the invocation's ids appended in brackets when there is one."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        ids = [f"{name}={value}" for name in FIELDS if (value := getattr(record, name, ""))]
        return f"{text} [{' '.join(ids)}]" if ids else text


def logging_config(*, log_format: str, level: str) -> dict[str, Any]:
    """Django's LOGGING for ``LOG_FORMAT`` (text or json)."""
    formatter = "json" if log_format == "json" else "text"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"invocation": {"()": InvocationFilter}},
        "formatters": {"text": {"()": TextFormatter}, "json": {"()": JsonFormatter}},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": formatter, "filters": ["invocation"]}},
        "root": {"handlers": ["console"], "level": level},
        "loggers": {"django.channels.server": {"level": "WARNING"}},
    }

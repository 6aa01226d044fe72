"""Logging for every OpenRFT process: plain text or one JSON object per line.

The request id, project and job of the work in hand ride along on each record through context
variables, so a line from deep inside the grader engine still says which job it was for.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from contextvars import ContextVar

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
project_id_var: ContextVar[str | None] = ContextVar("project_id", default=None)
job_id_var: ContextVar[str | None] = ContextVar("job_id", default=None)

LOG_FORMATS = ("text", "json")
# the loggers this project writes to, and the servers' own, all under one format
OWN_LOGGERS = ("openrft",)
SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "celery")
_CONTEXT = (("request_id", request_id_var), ("project_id", project_id_var), ("job_id", job_id_var))


class ContextFilter(logging.Filter):
    """Copies the current request id, project and job onto each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _CONTEXT:
            if not hasattr(record, name):
                setattr(record, name, var.get())
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, _ in _CONTEXT:
            value = getattr(record, name, None)
            if value:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s%(context)s")

    def format(self, record: logging.LogRecord) -> str:
        parts = [
            f"{name}={getattr(record, name)}" for name, _ in _CONTEXT if getattr(record, name, None)
        ]
        record.context = f" [{' '.join(parts)}]" if parts else ""
        return super().format(record)


def make_handler(log_format: str) -> logging.Handler:
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    return handler


def configure_logging(log_format: str, level: int = logging.INFO, servers: bool = False) -> None:
    """Send the `openrft.*` loggers (and, with `servers`, uvicorn's and Celery's) to stderr.

    Idempotent: a second call replaces the handler rather than doubling every line.
    """
    handler = make_handler(log_format)
    names = OWN_LOGGERS + (SERVER_LOGGERS if servers else ())
    for name in names:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if getattr(h, "_openrft", False)]:
            logger.removeHandler(old)
        handler._openrft = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False


def logging_config(log_format: str, level: str = "INFO") -> dict[str, object]:
    """The same setup as a `logging.config.dictConfig` dict, for servers that apply it in each
    worker process they start (uvicorn with several workers)."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}")
    formatter = JsonFormatter if log_format == "json" else TextFormatter
    handler = {
        "class": "logging.StreamHandler",
        "stream": "ext://sys.stderr",
        "formatter": "openrft",
        "filters": ["context"],
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": f"{__name__}.ContextFilter"}},
        "formatters": {"openrft": {"()": f"{__name__}.{formatter.__name__}"}},
        "handlers": {"openrft": handler},
        "loggers": {
            name: {"handlers": ["openrft"], "level": level, "propagate": False}
            for name in OWN_LOGGERS + SERVER_LOGGERS
        },
    }

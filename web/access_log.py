"""Access lines written by the application, with the request id, under any server; the servers' JSON log setup."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

# The access line comes from the app, not the server: granian's access log sees only the request's
# headers, and the X-Request-ID the service generates when the client sent none is not among them.
# Nothing is imported from Django here: the launcher and gunicorn.conf.py read json_logconfig() first.
access_logger = logging.getLogger("orders.access")


class AccessLogMiddleware:
    """One INFO line per request on `orders.access`: client, request line, status, size, milliseconds.

    Outermost in MIDDLEWARE, so the time covers every other middleware; django-guid (inside it)
    has set the request id by the time the line is written, and the log filter adds it.
    """

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        started = time.perf_counter()
        response = self.get_response(request)
        if access_logger.isEnabledFor(logging.INFO):
            size = "-" if getattr(response, "streaming", False) else str(len(response.content))
            log_access(request.META, request.method, request.get_full_path(), response.status_code, size, started)
        return response


def log_access(meta: Any, method: str, path: str, status: int, size: str, started: float) -> None:
    """The access line of one request: `meta` is its WSGI environ, `started` its time.perf_counter() at arrival."""
    access_logger.info(
        '%s "%s %s %s" %s %s %.1fms',
        meta.get("REMOTE_ADDR", "-"),
        method,
        path,
        meta.get("SERVER_PROTOCOL", "-"),
        status,
        size,
        (time.perf_counter() - started) * 1000,
    )


class ServerRecordFilter(logging.Filter):
    """The server's own records (no request of ours) get the `correlation_id` field as "-"."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "correlation_id"):
            record.correlation_id = "-"
        return True


def json_formatter() -> dict:
    """The JSON formatter of LOG_FORMAT=json (settings.LOGGING) and of the servers' own lines: one object a
    line, the record's time, level, logger, message and request id."""
    return {
        "()": "pythonjsonlogger.json.JsonFormatter",
        "format": "%(asctime)s %(levelname)s %(name)s %(message)s %(correlation_id)s",
        "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger", "correlation_id": "request_id"},
    }


def json_logconfig(level: str, *, server_loggers: Sequence[str] = ("gunicorn.error",)) -> dict:
    """The server's own loggers as one JSON object a line, the fields LOG_FORMAT=json gives ours."""
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "json",
        "filters": ["server"],
        "stream": "ext://sys.stdout",
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"server": {"()": "web.access_log.ServerRecordFilter"}},
        "formatters": {"json": json_formatter()},
        # gunicorn merges this over its defaults (its handler names); granian replaces its own with it.
        "handlers": {"console": handler, "error_console": {**handler, "stream": "ext://sys.stderr"}},
        "root": {"level": level.upper(), "handlers": ["console"]},
        "loggers": {
            name: {"handlers": ["console"], "level": level.upper(), "propagate": False} for name in server_loggers
        },
    }

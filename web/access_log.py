"""gunicorn's access lines with the request id (the X-Request-ID our response carries), plain or JSON.

Read by gunicorn.conf.py, before Django is loaded: nothing here imports Django.
"""

from __future__ import annotations

import logging

# gunicorn's default line, then the response's X-Request-ID (django-guid sets it on every response).
ACCESS_LOG_FORMAT = '%(h)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(M)sms request_id=%({x-request-id}o)s'


class AccessRequestIdFilter(logging.Filter):
    """Gives gunicorn's access records the `correlation_id` field our other records have."""

    def filter(self, record: logging.LogRecord) -> bool:
        atoms = record.args if isinstance(record.args, dict) else {}
        record.correlation_id = atoms.get("{x-request-id}o") or "-"
        return True


def json_logconfig(level: str) -> dict:
    """gunicorn's own loggers (errors and access) as one JSON object a line, like LOG_FORMAT=json's."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "web.access_log.AccessRequestIdFilter"}},
        "formatters": {
            "json": {
                "()": "pythonjsonlogger.json.JsonFormatter",
                "format": "%(asctime)s %(levelname)s %(name)s %(message)s %(correlation_id)s",
                "rename_fields": {
                    "asctime": "time",
                    "levelname": "level",
                    "name": "logger",
                    "correlation_id": "request_id",
                },
            }
        },
        # gunicorn merges this over its defaults: the same handler names, JSON formatted.
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "filters": ["request_id"],
                "stream": "ext://sys.stdout",
            },
            "error_console": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "filters": ["request_id"],
                "stream": "ext://sys.stderr",
            },
        },
        "root": {"level": level, "handlers": ["console"]},
        "loggers": {
            "gunicorn.error": {"handlers": ["error_console"], "level": level, "propagate": False},
            "gunicorn.access": {"handlers": ["console"], "level": "INFO", "propagate": False},
        },
    }

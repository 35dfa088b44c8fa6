"""Log records that say which request they belong to."""

from __future__ import annotations

import logging

from django_guid.context import guid


class RequestIdFilter(logging.Filter):
    """Sets `record.correlation_id`: the request id (django-guid) inside a request, "-" elsewhere."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.correlation_id = guid.get() or "-"
        return True

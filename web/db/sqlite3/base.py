"""SQLite with django-prometheus' query metrics, its cursor class built once, not once per query.

django-prometheus' SQLite backend builds a new cursor class (a `class` statement) for every cursor,
so for every query: about a fortieth of the CPU of a `GET /api/orders/:id` (docs/profiles/server.md).
Its PostgreSQL backend builds one per connection; this one, one per thread's database wrapper. The
metrics are the same.
"""

from __future__ import annotations

from django.utils.functional import cached_property
from django_prometheus.db.backends.sqlite3.base import DatabaseWrapper as _DatabaseWrapper
from django_prometheus.db.common import ExportingCursorWrapper


class DatabaseWrapper(_DatabaseWrapper):
    @cached_property
    def _cursor_class(self) -> type:
        return ExportingCursorWrapper(self.CURSOR_CLASS, self.alias, self.vendor)

    def create_cursor(self, name=None):
        return self.connection.cursor(factory=self._cursor_class)
